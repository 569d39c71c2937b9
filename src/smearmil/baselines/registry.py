"""The registry of baselines, named by string in comparison configs (``clinical/gnb``, ``mil/MISVM``)."""

from __future__ import annotations

from typing import Any

from ..models.registry import Registry

BASELINES: Registry[Any] = Registry("baseline")
