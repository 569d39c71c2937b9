"""Evaluation layer: metrics with confidence intervals, their plots, and probes of cell encoders; what runs
methods to be judged (cross-validation, comparisons, repeatability, the papers' tables) is in ``protocols``."""
