"""metalab.lab: the CLI, config validation, run store, executors and reports.

For notebooks: :func:`load` (stored seeds of an experiment as a pandas DataFrame).
"""

from metalab.lab.results import load

__all__ = ["load"]
