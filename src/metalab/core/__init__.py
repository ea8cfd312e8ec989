"""metalab.core."""
