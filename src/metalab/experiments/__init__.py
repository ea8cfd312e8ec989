"""Paper reproductions, one module per experiment, registered by name.

See :mod:`metalab.experiments.base` for the contract and
:mod:`metalab.experiments.registry` for discovery.
"""

from metalab.experiments.base import Check, Experiment, Paper, Verdict, param
from metalab.experiments.registry import get, load_all, register

__all__ = ["Check", "Experiment", "Paper", "Verdict", "get", "load_all", "param", "register"]
