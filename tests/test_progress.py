"""BatchProgress: silent off a terminal, live counts on one, and the end-of-run summary."""

from __future__ import annotations

import re
import sys
from io import StringIO

import pytest
from rich.console import Console

from fusion_of_n.cli.progress import BatchProgress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def terminal() -> tuple[Console, StringIO]:
    out = StringIO()
    return Console(file=out, force_terminal=True, width=200), out


def run_batch(progress: BatchProgress, clock: Clock) -> None:
    with progress:
        progress.start(10)
        for i in range(7):
            progress.advance(tokens=100, error=i == 3)
        clock.now += 3.5


def test_nothing_is_written_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress = BatchProgress(clock=Clock())
    run_batch(progress, Clock())
    assert not progress.enabled
    assert err.getvalue() == ""
    assert progress.rows == 7  # the counts are kept even when nothing is shown


def test_a_console_that_is_not_a_terminal_gets_no_output_and_no_ansi_codes() -> None:
    out = StringIO()
    run_batch(BatchProgress(console=Console(file=out), clock=Clock()), Clock())
    assert out.getvalue() == ""


def test_enabled_false_silences_even_a_terminal() -> None:
    console, out = terminal()
    run_batch(BatchProgress(console=console, enabled=False, clock=Clock()), Clock())
    assert out.getvalue() == ""


def test_a_terminal_shows_rows_rates_errors_and_eta() -> None:
    console, out = terminal()
    clock = Clock()
    run_batch(BatchProgress("generating", console=console, clock=clock), clock)
    text = ANSI.sub("", out.getvalue())
    assert "generating" in text
    # 7 rows and 700 tokens in 3.5 s: 2 rows/s, 200 tok/s; 3 rows left at 2 rows/s -> 1.5 s
    assert "7/10 rows · 2.0 rows/s · 200 tok/s · 1 error · ETA 0:00:02" in text


def test_an_unknown_total_shows_the_count_without_eta() -> None:
    clock = Clock()
    progress = BatchProgress(enabled=False, clock=clock)
    progress.start(None)
    progress.advance(5, tokens=50)
    clock.now = 10.0
    assert progress.status() == "5 rows · 0.5 rows/s · 5 tok/s · 0 errors"
    assert progress.eta() is None


def test_eta_is_unknown_before_any_row_is_done() -> None:
    clock = Clock()
    progress = BatchProgress(enabled=False, clock=clock)
    progress.start(100)
    clock.now = 1.0
    assert progress.eta() is None
    assert progress.status().endswith("ETA -")


def test_summary_reports_rows_errors_tokens_seconds_and_rate() -> None:
    clock = Clock(100.0)
    with BatchProgress(enabled=False, clock=clock) as progress:
        progress.start(4)
        progress.advance(tokens=1_000)
        progress.advance(2, tokens=2_500)
        progress.advance(error=True)
        clock.now = 102.0
    assert progress.summary() == "4 rows, 1 error, 3,500 tokens in 2.0 s (2.0 rows/s)"


def test_summary_time_stops_when_the_run_ends() -> None:
    clock = Clock()
    with BatchProgress(enabled=False, clock=clock) as progress:
        progress.start(1)
        progress.advance(error=True)
        clock.now = 4.0
    clock.now = 500.0
    assert progress.seconds == 4.0
    assert progress.summary() == "1 row, 1 error, 0 tokens in 4.0 s (0.2 rows/s)"


def test_error_rows_count_towards_both_rows_and_errors() -> None:
    progress = BatchProgress(enabled=False, clock=Clock())
    progress.start(10)
    progress.advance(3, error=True)
    progress.advance(2)
    assert (progress.rows, progress.errors) == (5, 3)


def test_summary_before_any_time_passed_has_no_rate() -> None:
    progress = BatchProgress(enabled=False, clock=Clock())
    progress.start(0)
    assert progress.summary() == "0 rows, 0 errors, 0 tokens in 0.0 s (- rows/s)"


def test_advance_before_start_starts_with_an_unknown_total_and_start_later_sets_it() -> None:
    console, out = terminal()
    clock = Clock()
    with BatchProgress(console=console, clock=clock) as progress:
        progress.advance(2, tokens=20)
        assert progress.total is None
        progress.start(8)
        clock.now = 2.0
    assert progress.total == 8
    assert "2/8 rows · 1.0 rows/s · 10 tok/s · 0 errors · ETA 0:00:06" in ANSI.sub("", out.getvalue())


def test_a_negative_total_is_rejected() -> None:
    with pytest.raises(ValueError, match="total"):
        BatchProgress(enabled=False).start(-1)
