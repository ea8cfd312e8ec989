"""metalab.metalearn."""
