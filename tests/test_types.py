"""The values of the data path: Params.merge and the usage a Result reports."""

from __future__ import annotations

from fusion_of_n.types import Candidate, OutputFormat, Params, Result, Usage


def test_params_merge_takes_every_field_the_other_sets() -> None:
    preset = Params(temperature=0.7, top_p=0.9, max_tokens=100, seed=1, stop=("\n\n",))
    merged = preset.merge(Params(temperature=0.0, max_tokens=5, stop=()))
    assert merged == Params(temperature=0.0, top_p=0.9, max_tokens=5, seed=1, stop=())


def test_params_merge_keeps_fields_the_other_leaves_none() -> None:
    fmt = OutputFormat("answer", "root ::= [0-9]")
    preset = Params(temperature=0.7, seed=3, top_logprobs=5, output_format=fmt)
    assert preset.merge(Params()) == preset
    assert Params().merge(preset) == preset
    assert preset.merge(Params(seed=0)).seed == 0  # 0 is set, not "unset"


def test_aggregation_usage_is_every_stage_but_sampling() -> None:
    result = Result(
        "a",
        "bon",
        (Candidate("a", "m"),),
        usage={"sampling": Usage(1, 10, 20, 1.0), "scoring": Usage(3, 30, 3, 0.5), "fusion": Usage(1, 5, 7, 0.25)},
    )
    assert result.aggregation_usage == Usage(4, 35, 10, 0.75)
    assert result.total_usage == Usage(5, 45, 30, 1.75)
    assert Result("a", "first", ()).aggregation_usage == Usage()
