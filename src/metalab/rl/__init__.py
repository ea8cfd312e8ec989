"""metalab.rl."""
