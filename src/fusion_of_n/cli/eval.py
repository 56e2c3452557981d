"""The evaluation commands: ``eval winrate | translation | accuracy | attribution`` and the top-level
``sweep`` and ``report``. Each parses, calls :mod:`fusion_of_n.eval` (plain library code that returns
a result) and writes the result's JSON to ``-o`` or stdout. The library modules whose constants the
options show are imported with this module; the others when their command runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from ..config import environment
from ..eval.attribution import MIN_CHARS, MIN_TOKENS, attribute_file
from ..eval.io import dump_result, save_result
from ..eval.sweep import SWEEP_KS, SWEEP_METHODS, SWEEP_METRICS, sweep_file
from ..eval.translation import METRICS, evaluate_translation, read_references
from ..records import read_checked_records
from .common import friendly_errors, setup_logging


def write_result(result: Mapping[str, Any], path: str | None, *, announce: bool = False) -> None:
    """One eval result as strict UTF-8 JSON (indent 1, NaN as null) to ``path``, or to stdout when it is
    None; ``announce`` also says "wrote PATH" on stderr after writing a file."""
    if path is None:
        click.echo(dump_result(result))
        return
    save_result(result, path)
    if announce:
        click.echo(f"wrote {path}", err=True)


@click.command("winrate")
@click.argument("system", type=click.Path(dir_okay=False))
@click.option("--reference", "reference_path", type=click.Path(dir_okay=False), help="JSONL rows {id, reference}")
@click.option("--reference-method", help="take the references from results[METHOD] of a generate output")
@click.option("--head-to-head", "pair_of_methods", metavar="M1,M2", help="compare two methods of SYSTEM instead")
@click.option("--judge", "judge_spec", required=True, metavar="SPEC", help="judge model spec")
@click.option("--method", default=None, help="the system's method  [default: fusion]")
@click.option("--max-tokens", type=int, default=512, show_default=True, help="judge reply limit")
@click.option("--seed", type=int, default=0, show_default=True, help="bootstrap seed")
@click.option("--resamples", type=int, default=2000, show_default=True, help="bootstrap resamples")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write the JSON here (default: stdout)")
@click.option("-v", "--verbose", count=True)
@friendly_errors
def winrate_command(system: str, judge_spec: str, output: str | None, verbose: int, **opts: Any) -> None:
    """Pairwise LLM-judge win rate of SYSTEM (a generate output) against --reference rows (by id), or of
    one method against another (--head-to-head fusion,bon). Each pair is judged in both orders."""
    from ..eval.winrate import format_table, head_to_head, winrate

    setup_logging(verbose)
    reference_path, reference_method, pair_of_methods, method = (
        opts.pop(k) for k in ("reference_path", "reference_method", "pair_of_methods", "method")
    )
    if (reference_path is None) == (pair_of_methods is None):
        raise click.UsageError("give --reference REF.jsonl or --head-to-head M1,M2 (one of them)")
    if pair_of_methods:
        if method or reference_method:
            raise click.UsageError("--head-to-head names both methods; drop --method and --reference-method")
        result = head_to_head(system, pair_of_methods, judge_spec, environment(), **opts)
    else:
        method = method or "fusion"
        result = winrate(
            system, reference_path, judge_spec, method, environment(), reference_method=reference_method, **opts
        )
    write_result(result, output or None)
    click.echo(format_table(result), err=True)


@click.command("translation")
@click.argument("records_path", metavar="OUTPUT", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--references",
    "references_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help='JSONL of {"id", "reference"[, "source"]} rows, joined to OUTPUT records by id',
)
@click.option("--comet-model", type=click.Path(exists=True), help="local unbabel-comet model folder (or .ckpt)")
@click.option("--oracle-metric", type=click.Choice(METRICS), default="chrf", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="random pick and bootstrap seed")
@click.option("--resamples", type=click.IntRange(1), default=1000, show_default=True, help="bootstrap resamples")
@click.option("--segments", is_flag=True, help="also write every segment's scores")
@click.option("-o", "--output", "result_path", type=click.Path(dir_okay=False), help="result JSON (default: stdout)")
@click.option("-v", "--verbose", count=True)
@friendly_errors
def translation_command(
    records_path: str,
    references_path: str,
    comet_model: str | None,
    oracle_metric: str,
    seed: int,
    resamples: int,
    segments: bool,
    result_path: str | None,
    verbose: int,
) -> None:
    """chrF, chrF++, BLEU (and COMET) per language and method of a generate OUTPUT, with bootstrap CIs,
    against an oracle and a random pick from each candidate pool."""
    from ..eval.comet import load_comet

    setup_logging(verbose)
    references = read_references(references_path)
    comet = load_comet(comet_model) if comet_model else None
    result = evaluate_translation(
        read_checked_records(records_path),
        references,
        oracle_metric=oracle_metric,
        comet=comet,
        seed=seed,
        resamples=resamples,
        segments=segments,
    )
    write_result({**result, "output": records_path, "references": references_path}, result_path, announce=True)


@click.command("accuracy")
@click.argument("records_path", metavar="OUTPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--answers", "field", required=True, metavar="FIELD", help="dotted path of the gold answer: meta.answer")
@click.option("--seed", type=int, default=0, show_default=True, help="bootstrap seed")
@click.option("--resamples", type=click.IntRange(1), default=1000, show_default=True, help="bootstrap resamples")
@click.option("-o", "--output", "result_path", type=click.Path(dir_okay=False), help="result JSON (default: stdout)")
@click.option("-v", "--verbose", count=True)
@friendly_errors
def accuracy_command(
    records_path: str, field: str, seed: int, resamples: int, result_path: str | None, verbose: int
) -> None:
    """Answer accuracy per method and language of a generate OUTPUT (with maj@k, pass@k and one-sample
    baselines) and whether each method answers in the prompt's language."""
    from ..eval.accuracy import evaluate_accuracy

    setup_logging(verbose)
    result = evaluate_accuracy(read_checked_records(records_path), field, seed=seed, resamples=resamples)
    write_result({**result, "output": records_path}, result_path, announce=True)


@click.command("attribution")
@click.argument("output_file", metavar="OUTPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--method", default="fusion", show_default=True, help="Which result of each record to attribute.")
@click.option("--min-tokens", default=MIN_TOKENS, show_default=True, type=click.IntRange(1), help="Shingle length.")
@click.option("--min-chars", default=MIN_CHARS, show_default=True, type=click.IntRange(1), help="Shortest copy.")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="Result JSON (default: stdout).")
@click.option("-v", "--verbose", count=True, help="Show tracebacks.")
@friendly_errors
def attribution_command(
    output_file: str, method: str, min_tokens: int, min_chars: int, seed: int, output: str | None, verbose: int
) -> None:
    """How much of each fused answer in OUTPUT (a generate file) was copied from each candidate.

    Writes {"kind": "attribution", "overall", "by_language", "records"}: per record the share of the
    answer's non-whitespace characters copied from each candidate (by pool index and by model) and the
    novel share; per language and overall their means with 95% bootstrap intervals.
    """
    setup_logging(verbose)
    result = attribute_file(output_file, method, seed=seed, min_tokens=min_tokens, min_chars=min_chars)
    write_result(result, output)


@click.command("sweep")
@click.argument("output_file", metavar="OUTPUT", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--k", "ks", default=",".join(map(str, SWEEP_KS)), show_default=True, help="Subset sizes, comma-separated."
)
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1), help="Subsets drawn per k.")
@click.option("--seed", default=0, show_default=True, help="First subset seed (also the bootstrap seed).")
@click.option("--methods", default=",".join(SWEEP_METHODS), show_default=True)
@click.option("--fusor", default=None, help="Fusor SPEC for fusion/usc.")
@click.option("--judge", default=None, help="Judge SPEC for bon (default: the fusor).")
@click.option("--metric", type=click.Choice(SWEEP_METRICS), default=SWEEP_METRICS[0], show_default=True)
@click.option("--answers", default="meta.answer", show_default=True, help="Gold answer field (accuracy).")
@click.option("--references", default=None, type=click.Path(exists=True, dir_okay=False), help="REFS.jsonl (chrf).")
@click.option("--cache", default=None, type=click.Path(file_okay=False), help="Folder of the call cache.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1))
@click.option("--adaptive", is_flag=True, help="Also replay --adaptive on each pool: METHOD+adaptive at k = N.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="Result JSON (default: stdout).")
@click.option("-v", "--verbose", count=True, help="Show tracebacks.")
@friendly_errors
def sweep_command(output_file: str, ks: str, methods: str, output: str | None, verbose: int, **options: Any) -> None:
    """Quality and tokens against k: re-aggregate seeded k-subsets of each stored pool in OUTPUT.

    Writes {"kind": "sweep", "points": [{method, k, seed, quality, tokens, n_records, ...}],
    "summary": [{method, k, quality: {mean, ci, n}, tokens, ...}]}. Accuracy is 0-1, chrF 0-100;
    tokens are per record (sampling share of the k candidates + the aggregation's own usage).
    """
    setup_logging(verbose)
    try:
        sizes = tuple(int(k) for k in ks.split(","))
    except ValueError:
        raise click.BadParameter(f"{ks!r} is not a comma-separated list of integers", param_hint="--k") from None
    names = tuple(m.strip() for m in methods.split(",") if m.strip())
    if options["metric"] == "chrf" and options["references"] is None:
        raise click.UsageError("--metric chrf needs --references REFS.jsonl")
    result = sweep_file(output_file, ks=sizes, methods=names, env=environment(), **options)
    write_result(result, output)


@click.command("report")
@click.argument("results", nargs=-1, required=True, metavar="RESULTS...", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    default="report",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for index.html, report.md and the PNGs (created when absent).",
)
@click.option(
    "--viewer-url",
    metavar="URL",
    default=None,
    help="Add example rows linked to their pages in a running `fusion-of-n view` (e.g. http://127.0.0.1:8765); "
    "default: no examples, no links.",
)
@click.option("-v", "--verbose", count=True, help="Show tracebacks.")
@friendly_errors
def report_command(results: tuple[str, ...], output: str, viewer_url: str | None, verbose: int) -> None:
    """An HTML page and a Markdown report with plots from RESULTS: generate outputs (a cost table), eval
    results (winrate, accuracy, translation, sweep, attribution) and train manifests (train.json: the
    students' losses)."""
    from ..eval.report import build_report

    setup_logging(verbose)
    written = build_report(results, output, viewer_url=viewer_url)
    plots = sum(1 for p in written if p.suffix == ".png")
    click.echo(f"wrote {written[0]} and {written[1].name} with {plots} plot(s)", err=True)
