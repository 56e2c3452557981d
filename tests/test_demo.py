from __future__ import annotations

from rich.console import Console

from fusion_of_n import PipelineSettings
from fusion_of_n.cli.demo import DEMO_METHODS, DEMO_PROMPTS, run_demo
from fusion_of_n.testing import FakeBackend


async def test_demo_aggregates_each_pool_by_every_method_and_shows_cost() -> None:
    gen = FakeBackend(["The answer is 26.", "It is 26.", "I get 46."], name="gen")
    helper = FakeBackend(["Comparison: 3 is wrong.\n[[7]]"], name="helper")
    console = Console(record=True, width=160)
    settings = PipelineSettings.of(models=[gen], fusor=helper, n=3)
    await run_demo(settings, {}, console)
    out = console.export_text()
    assert len(gen.calls) == len(DEMO_PROMPTS)  # one pool per prompt, shared by the methods
    for title, _ in DEMO_PROMPTS:
        assert title in out
    for method in DEMO_METHODS:
        assert out.count(method) >= len(DEMO_PROMPTS)
    assert "tokens" in out and "done in" in out
    assert "vote: candidate 1" in out  # 26 wins the vote


async def test_model_text_is_shown_literally_not_read_as_rich_markup() -> None:
    """LaTeX display math and bracketed tags in answers are printed as written; '[/x]' used to raise."""
    texts = ["\\[ 36 - 10 = 26 \\] [bold]not bold[/bold] [/x]"] * 2
    gen = FakeBackend(texts, name="gen[1]")
    helper = FakeBackend(["Comparison: same.\n[[\\[ 26 \\] [/x]]]"], name="helper")
    console = Console(record=True, width=200)

    await run_demo(PipelineSettings.of(models=[gen], fusor=helper, n=2), {}, console)

    out = console.export_text()
    assert "\\[ 36 - 10 = 26 \\]" in out
    assert "[bold]not bold[/bold] [/x]" in out
    assert "gen[1]" in out
