"""Evaluation layer: metrics with confidence intervals, cross-validation, comparison tables."""
