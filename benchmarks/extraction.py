"""Answer-extraction benchmark: ``vote`` over adversarial candidates, and the event loop meanwhile.

Prints, measured side by side in one run: (a) the wall time of ``vote`` over the 28 KB candidate
of repeated ``\\boxed{`` (issue 11: 20 s before the fix), over ``\\boxed{`` x 20,000 (254 s before),
over the slowest input found for the new code, over a normal pool and over 64 long candidates;
(b) the longest the event loop went without running another coroutine while ``vote`` read 64 long
candidates (what a proxy's ``/health`` would wait); (c) the old forward brace scan against the
one-pass matching on the same small inputs (the ratio grows with the input: the old scan is
quadratic). Nothing is asserted.

    .venv/bin/python benchmarks/extraction.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from _report import figure

from fusion_of_n import answers
from fusion_of_n.aggregators.vote import MajorityVote
from fusion_of_n.types import Candidate, Request

REQUEST = Request.from_prompt("Natalia sold clips to 48 of her friends in April, and half as many in May. How many?")
NORMAL = [
    "In April she sold 48 clips. In May she sold half as many: 48 / 2 = 24. "
    "Altogether 48 + 24 = 72 clips. " * 6 + "The answer is 72.",
    "April: 48. May: 24. Total: \\boxed{72}",
    "She sold 48 + 24 = 72 clips.\n#### 72",
    "Half of 48 is 24, so the total is 48 + 24 = 74.",
    "**Final Answer:** 72",
    "The correct total is 72 clips, since 24 were sold in May.",
    "We add 48 and 24 and get 72. Answer: 72",
    "48 + 48/2 = 72",
]
BOXES_28KB = "\\boxed{" * 4_000  # the candidate of issue 11
BOXES_20000 = "\\boxed{" * 20_000
SPACED_BOXES_28KB = "\\boxed{ " * 3_500  # with spaces, so the whole examined tail is unclosed boxes
PHRASES_28KB = "answer: x x x x x x x x x 1 " * 1_000  # no full stop: every clause runs to its cap
REASONING_12KB = (NORMAL[0] + " ") * 20  # an ordinary long answer: sentences, sums, "The answer is"


def pool(texts: list[str]) -> list[Candidate]:
    return [Candidate(text, "m", "stop", index=i) for i, text in enumerate(texts)]


def old_boxed_contents(text: str) -> list[str]:
    """The algorithm before the fix: from each box, count braces forward until its own closes."""
    contents = []
    for match in answers._BOXED.finditer(text):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            if depth == 0:
                contents.append(text[start:pos])
                break
    return contents


def median_seconds(op: Callable[[], object], repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        op()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


async def vote_seconds(texts: list[str], repeats: int) -> float:
    candidates = pool(texts)
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        await MajorityVote().aggregate(REQUEST, candidates)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


async def loop_pause_during_vote(texts: list[str]) -> tuple[float, float]:
    """(vote wall seconds, the longest gap between two turns of a coroutine that only yields)."""
    done = False
    longest = 0.0

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await MajorityVote().aggregate(REQUEST, pool(texts))
    wall = time.perf_counter() - started
    done = True
    await ticking
    return wall, longest


async def run(repeats: int) -> None:
    print(f"(a) vote wall time, median of {repeats} (extraction reads the last {answers.MAX_EXAMINED_CHARS:,} chars)")
    print(f"{'pool':<62} {'chars':>10} {'ms':>8}")
    rows = [
        ("1 candidate: \\boxed{ x 4,000 (28 KB; 20 s before the fix)", [BOXES_28KB]),
        ("1 candidate: \\boxed{ x 20,000 (140 KB; 254 s before)", [BOXES_20000]),
        ("1 candidate: '\\boxed{ ' x 3,500 (28 KB, all boxes examined)", [SPACED_BOXES_28KB]),
        ("1 candidate: 'answer: x x ... 1' x 1,000 (28 KB, the slowest)", [PHRASES_28KB]),
        ("8 normal candidates (GSM8K-style, 0.1 KB each)", NORMAL),
        ("64 ordinary long candidates (12.6 KB each)", [REASONING_12KB] * 64),
        (
            "64 adversarial candidates (the four above, 16 times)",
            [BOXES_28KB, BOXES_20000, SPACED_BOXES_28KB, PHRASES_28KB] * 16,
        ),
    ]
    for number, (label, texts) in enumerate(rows):
        seconds = await vote_seconds(texts, repeats)
        print(f"{label:<62} {sum(map(len, texts)):>10,} {seconds * 1000:>8.2f}")
        if number == 0:
            figure("extraction.vote_ms", seconds * 1000, f"{seconds * 1000:.2f} ms")

    print("\n(b) the event loop while vote reads 64 candidates in its worker thread")
    print(f"{'pool':<62} {'vote ms':>10} {'pause ms':>8}")
    for label, texts in [
        ("64 ordinary long candidates (12.6 KB each)", [REASONING_12KB] * 64),
        ("64 x '\\boxed{ ' x 3,500", [SPACED_BOXES_28KB] * 64),
        ("64 x 'answer: x x ... 1' x 1,000", [PHRASES_28KB] * 64),
    ]:
        wall, pause = await loop_pause_during_vote(texts)
        print(f"{label:<62} {wall * 1000:>10.1f} {pause * 1000:>8.2f}")
    print("(pause: the longest the loop went without running another coroutine, i.e. what /health would wait)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    asyncio.run(run(repeats))

    print("\n(c) brace matching on the same input: the old forward scan vs the one pass (boxes only)")
    print(f"{'input':<30} {'old ms':>9} {'new ms':>9} {'old/new':>9}")
    for count in (250, 500, 1_000):
        text = "\\boxed{" * count
        old = median_seconds(lambda text=text: old_boxed_contents(text), repeats)
        new = median_seconds(lambda text=text: list(answers._boxed_contents(text)), repeats)
        label = "\\boxed{ x " + format(count, ",")
        print(f"{label:<30} {old * 1000:>9.2f} {new * 1000:>9.3f} {old / new:>9.0f}")


if __name__ == "__main__":
    main()
