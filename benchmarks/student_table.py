"""Print the README's student table from a `make student-mini` folder (the last step of that target).

    python benchmarks/student_table.py out/student-mini fusion bon

Reads ``student-M/train.json``, ``accuracy-M.json`` for each method M, and ``winrate-students.json``
(the first method's student against the second's, judged in both orders), and prints Markdown:
accuracy and language correctness (answers written in the prompt's language) per language, with
seeded 95% bootstrap intervals, and the head-to-head win rate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def cell(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("score") is None:
        return "-"
    low, high = summary["ci"]
    return f"{100 * summary['score']:.1f} % [{100 * low:.0f}, {100 * high:.0f}] (n={summary['n']})"


def main(folder: Path, methods: list[str]) -> None:
    rows = []
    languages: list[str] = []
    for method in methods:
        manifest = json.loads((folder / f"student-{method}" / "train.json").read_text())
        accuracy = json.loads((folder / f"accuracy-{method}.json").read_text())
        fidelity = accuracy["language_correctness"]
        languages = sorted(accuracy["languages"])
        train_loss = manifest["loss"]["train"][-1][1] if manifest["loss"]["train"] else None
        eval_loss = manifest["loss"]["eval"][-1][1] if manifest["loss"]["eval"] else None
        rows.append(
            [
                f"{method}-data student",
                f"{manifest['examples']['train']} (+{manifest['examples']['eval']} held out, "
                f"{manifest['examples']['excluded']} excluded)",
                "-" if train_loss is None else f"{train_loss:.3f}",
                "-" if eval_loss is None else f"{eval_loss:.3f}",
                f"{manifest['seconds'] / 60:.1f} min",
                *[cell(accuracy["languages"][lang]["first"]["accuracy"]) for lang in languages],
                cell(accuracy["overall"]["first"]["accuracy"]),
                *[cell(fidelity["languages"][lang]["first"]["correct"]) for lang in languages],
            ]
        )
    header = ["student", "training examples", "last train loss", "eval loss", "training time",
              *[f"held-out math, {lang}" for lang in languages], "held-out math, all",
              *[f"answers in the prompt's language, {lang}" for lang in languages]]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    winrate_path = folder / "winrate-students.json"
    if winrate_path.is_file() and len(methods) >= 2:
        overall = json.loads(winrate_path.read_text())["overall"]
        rate = "-" if overall["win_rate"] is None else f"{100 * overall['win_rate']:.1f} %"
        low, high = overall["ci"]
        ci = "" if low is None else f" [{100 * low:.0f}, {100 * high:.0f}]"
        print()
        print(
            f"Held-out MT-bench, {methods[0]}-data student against {methods[1]}-data student (judged in both "
            f"orders): win rate {rate}{ci}; {overall['pairs']} pairs: {overall['wins']} wins, {overall['ties']} ties, "
            f"{overall['losses']} losses, {overall['missing']} missing."
        )


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python benchmarks/student_table.py FOLDER METHOD [METHOD ...]")
    main(Path(sys.argv[1]), sys.argv[2:])
