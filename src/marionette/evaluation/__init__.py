"""Evaluation (paper §Experiments): episodes, renderers, identity judges, metrics and reports."""
