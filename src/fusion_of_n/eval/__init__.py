"""Evaluation: win-rates with confidence intervals, translation metrics, accuracy, attribution,
N-sweeps and reports. Plain library code: each evaluation returns a JSON-ready result (``"kind"`` names
which) that ``report`` reads; the commands in :mod:`fusion_of_n.cli.eval` write them to files."""
