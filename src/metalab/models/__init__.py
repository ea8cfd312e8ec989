"""metalab.models."""
