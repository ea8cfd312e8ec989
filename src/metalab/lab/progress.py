"""Progress display for long phases (compile, seeds, experiments), on stderr via rich."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class Progress:
    """A thin wrapper over ``rich.progress`` shared by every phase of one CLI command.

    ``enabled=False`` gives a silent instance (library use, tests).
    """

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._rich: RichProgress | None = None
        if enabled:
            self._rich = RichProgress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
                disable=not sys.stderr.isatty(),
            )

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)

    @contextmanager
    def phase(self, description: str) -> Iterator[None]:
        """An indeterminate phase (e.g. compilation); prints its duration when done."""
        t0 = time.perf_counter()
        task = None
        if self._rich is not None:
            task = self._rich.add_task(description, total=None)
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            if self._rich is not None and task is not None:
                self._rich.update(task, total=1, completed=1)
            self.note(f"{description}: {dt:.1f}s")

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A counted phase; yields ``advance(n)``."""
        if self._rich is None:
            yield lambda n: None
            return
        task = self._rich.add_task(description, total=total)
        yield lambda n: self._rich.advance(task, n)
