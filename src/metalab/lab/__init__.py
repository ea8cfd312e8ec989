"""metalab.lab."""
