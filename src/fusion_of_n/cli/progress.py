"""A live progress line for batch runs on stderr (``fusion-of-n generate``), and the one-line summary printed
at the end. The runner only calls ``on_start``/``on_row``; drawing them is the command line's business.

::

    with BatchProgress("generating") as progress:
        progress.start(total=len(rows))          # None when the number of rows is unknown
        for result in results:
            progress.advance(tokens=result.total_usage.total_tokens, error=result.error is not None)
    print(progress.summary(), file=sys.stderr)   # 1,000 rows, 3 errors, 812,400 tokens in 95.2 s (10.5 rows/s)

The display shows rows done/total, rows/s, tokens/s, errors and the ETA; rates are averages since
``start`` (steady over a long run, unlike a short window). It draws nothing at all, not even an
ANSI code, unless its console is a terminal: by default that is ``sys.stderr.isatty()``; pass
``console`` (a rich Console) or ``enabled`` to decide otherwise. While the line is live, prints to
``sys.stderr`` appear above it (stdout is left alone, records may be streaming there); log records
should go through the same console (``rich.logging.RichHandler(console=progress.console)``) so they
print above it too.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text


def _isatty() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _clock_text(seconds: float) -> str:
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _rate_text(rate: float | None, unit: str) -> str:
    if rate is None:
        return f"- {unit}"
    return f"{rate:,.0f} {unit}" if rate >= 100 else f"{rate:.1f} {unit}"


class BatchProgress:
    """Counts rows, errors and tokens of a batch run and, on a terminal, shows them live.

    Use as a context manager: the live line starts with :meth:`start` and stops on exit. ``clock``
    is injectable for tests. The counters (``rows``, ``errors``, ``tokens``, ``seconds``) are there
    whether or not anything is displayed.
    """

    def __init__(
        self,
        description: str = "generating",
        *,
        console: Console | None = None,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh_per_second: float = 4.0,
    ) -> None:
        if enabled is None:
            enabled = console.is_terminal if console is not None else _isatty()
        self.description = description
        self.enabled = enabled
        self.console = console if console is not None else Console(stderr=True)
        self.total: int | None = None
        self.rows = 0
        self.errors = 0
        self.tokens = 0
        self._clock = clock
        self._refresh = refresh_per_second
        self._started: float | None = None
        self._stopped: float | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> BatchProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, total: int | None) -> None:
        """Start the clock and the live line; ``total`` is the number of rows (None if unknown).

        Calling it again only updates ``total`` (e.g. once a streamed source knows its size).
        """
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0 or None, got {total}")
        self.total = total
        if self._started is None:
            self._started = self._clock()
            if self.enabled:
                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(bar_width=30),
                    _StatsColumn(self),
                    console=self.console,
                    refresh_per_second=self._refresh,
                    transient=False,
                    redirect_stdout=False,  # records may be streaming to stdout: never reroute them
                )
                self._task = self._progress.add_task(self.description, total=total)
                self._progress.start()
        elif self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)

    def advance(self, rows: int = 1, *, tokens: int = 0, error: bool = False) -> None:
        """Count ``rows`` finished rows that used ``tokens`` tokens; ``error`` marks them as failed."""
        if self._started is None:
            self.start(None)
        self.rows += rows
        self.tokens += tokens
        if error:
            self.errors += rows
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.rows)

    def stop(self) -> None:
        """Freeze the clock and draw the final state of the line (called on exit)."""
        if self._started is not None and self._stopped is None:
            self._stopped = self._clock()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @property
    def seconds(self) -> float:
        """Seconds since ``start`` (until ``stop`` once stopped)."""
        if self._started is None:
            return 0.0
        end = self._stopped if self._stopped is not None else self._clock()
        return max(0.0, end - self._started)

    def rate(self, count: int) -> float | None:
        """``count`` per second since ``start``; None before any time has passed."""
        seconds = self.seconds
        return count / seconds if seconds > 0 else None

    def eta(self) -> float | None:
        """Seconds left at the average pace so far; None when the total or the pace is unknown."""
        rate = self.rate(self.rows)
        if self.total is None or not rate:
            return None
        return max(0, self.total - self.rows) / rate

    def status(self) -> str:
        """The live line's figures: ``7/10 rows · 3.5 rows/s · 120 tok/s · 1 error · ETA 0:00:01``."""
        done = f"{self.rows:,}/{self.total:,} rows" if self.total is not None else f"{self.rows:,} rows"
        row_rate, token_rate = self.rate(self.rows), self.rate(self.tokens)
        parts = [
            done,
            _rate_text(row_rate, "rows/s"),
            f"{token_rate:,.0f} tok/s" if token_rate is not None else "- tok/s",  # tokens: whole numbers
            _count(self.errors, "error"),
        ]
        eta = self.eta()
        if self.total is not None:
            parts.append(f"ETA {_clock_text(eta)}" if eta is not None else "ETA -")
        return " · ".join(parts)

    def summary(self) -> str:
        """One line for the end of a run: ``1,000 rows, 3 errors, 812,400 tokens in 95.2 s (10.5 rows/s)``."""
        pace = _rate_text(self.rate(self.rows), "rows/s")
        counts = ", ".join(
            _count(n, what) for n, what in ((self.rows, "row"), (self.errors, "error"), (self.tokens, "token"))
        )
        return f"{counts} in {self.seconds:.1f} s ({pace})"


class _StatsColumn(ProgressColumn):
    """Renders :meth:`BatchProgress.status` (the counts live on BatchProgress, not on the rich Task)."""

    def __init__(self, progress: BatchProgress) -> None:
        super().__init__()
        self._owner = progress

    def render(self, task: Task) -> Text:
        return Text(self._owner.status(), style="progress.data.speed")
