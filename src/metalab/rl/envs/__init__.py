"""metalab.rl.envs."""
