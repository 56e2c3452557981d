"""Evaluation: win-rates with confidence intervals, translation metrics, accuracy, attribution,
N-sweeps and reports. Every command writes a JSON result (``"kind"`` names which) that ``report`` reads."""
