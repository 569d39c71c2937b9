"""smearmil: deep multiple-instance learning on blood-smear cells and clinical attributes.

The Python API (``docs/api.md``): ``load_cohort``, ``load_config``, ``train``, ``cross_validate``,
``load`` (a model folder: ``Model.predict``), ``SmearMILClassifier`` (scikit-learn style)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

API = ("Model", "SmearMILClassifier", "Table", "cross_validate", "load", "load_cohort", "load_config", "train")


def __getattr__(name: str) -> Any:
    # imported on first use: the command line's help does not need torch
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'smearmil' has no attribute {name!r}")


__all__ = ["__version__", *API]
