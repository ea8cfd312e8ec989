"""metalab.metagrad."""
