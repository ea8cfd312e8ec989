"""metalab: a JAX library for meta-learning, meta-gradients, discovered optimisers,
exploration, diversity, constrained RL, transfer, and their paper reproductions."""

__version__ = "0.1.0"
