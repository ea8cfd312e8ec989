"""metalab.bbo."""
