"""Protocols that fit methods and judge them: cross-validation by patient (``cv``, repeated over seeds),
comparisons on identical folds, hold-out and final runs, prediction of new patients, repeatability over
image sets, the papers' tables, and the cached-feature and encoder CVs. Metrics and plots are in
``evaluation``."""
