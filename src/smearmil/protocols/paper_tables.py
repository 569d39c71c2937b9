"""The names of ``smearmil reproduce``'s tables and budgets, light enough for the CLI to list without
importing the protocols (``protocols.reproduce`` defines the tables under these names)."""

from __future__ import annotations

from typing import Literal

Budget = Literal["cpu", "paper"]
BUDGETS: tuple[Budget, ...] = ("cpu", "paper")
TABLE_NAMES = ("table2", "table3", "table4", "table5", "aml-encoders")
