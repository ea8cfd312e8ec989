"""Progress display for long phases (compile, seeds, experiments), on stderr.

With a terminal, rich's live bars. Without one (output piped to a file, a CI log, ``nohup``),
one plain line per finished seed or chunk with the elapsed time and an ETA, written at once
(stderr is unbuffered), so a log shows where a long run is while it runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

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


def fmt_seconds(s: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f}s" if s >= 10 else f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def eta(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the rate so far (None before the first item)."""
    if done <= 0 or total <= done:
        return None if done <= 0 else 0.0
    return elapsed / done * (total - done)


class Progress:
    """Progress of one CLI command: rich bars on a terminal, log lines otherwise.

    ``enabled=False`` gives a silent instance (library use, tests). ``tty`` forces one mode.
    """

    def __init__(
        self,
        enabled: bool = True,
        console: Console | None = None,
        tty: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.console = console or Console(stderr=True)
        self._rich: RichProgress | None = None
        if enabled and self.tty:
            self._rich = RichProgress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def _line(self, text: str) -> None:
        self.stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self.console.print(text)
        else:
            self._line(text)

    @contextmanager
    def phase(self, description: str) -> Iterator[None]:
        """An indeterminate phase (e.g. compilation); prints its duration when done."""
        t0 = time.perf_counter()
        task = None
        if self._rich is not None:
            task = self._rich.add_task(description, total=None)
        elif self.enabled:
            self._line(f"{description} ...")
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            if self._rich is not None and task is not None:
                self._rich.update(task, total=1, completed=1)
            self.note(f"{description}: {fmt_seconds(dt)}")

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A counted phase; yields ``advance(n)``."""
        if not self.enabled:
            yield lambda n: None
            return
        if self._rich is not None:
            task = self._rich.add_task(description, total=total)
            yield lambda n: self._rich.advance(task, n)
            return
        t0 = time.perf_counter()
        done = [0]

        def advance(n: int) -> None:
            if n <= 0:
                return
            done[0] += n
            elapsed = time.perf_counter() - t0
            left = eta(done[0], total, elapsed)
            tail = "" if left is None else f", ETA {fmt_seconds(left)}"
            self._line(f"{description}: {done[0]}/{total} (elapsed {fmt_seconds(elapsed)}{tail})")

        yield advance
