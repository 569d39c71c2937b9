"""The published figures smearmil puts beside its own, against figures typed again from the lymphocytosis
paper's full text (Sahasrabudhe et al. 2020, Tables 2-5), and Table 5's pattern from the paper's own
per-set predictions."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from smearmil.protocols.reproduce import TABLES, published_figures

from .conftest import invoke

# typed from the paper a second time: (table, row, metric, value)
TYPED = [
    ("table3", "MOE-P1 f_Mean K=32", "sensitivity", 0.8621),
    ("table3", "MOE-P1 f_Mean K=32", "specificity", 0.8462),
    ("table3", "MOE-P1 f_Mean K=32", "accuracy", 0.8571),
    ("table3", "MOE-P1 f_Mean K=32", "balanced_accuracy", 0.8541),
    ("table3", "Biologists", "balanced_accuracy", 0.7707),
    ("table3", "Classical Approach (imgs+attrs)", "balanced_accuracy", 0.7944),
    ("table3", "DeepMIL K=32", "balanced_accuracy", 0.8289),
    ("table3", "Gaussian Naive Bayes", "sensitivity", 0.5517),
    ("table4", "CNN f_Mean K=64", "roc_auc", 0.9629),
    ("table4", "MLP", "roc_auc", 0.8912),
    ("table4", "Biologists", "roc_auc", 0.9204),
    ("table4", "MOE-P3 f_Mean K=64", "roc_auc", 0.9390),
    ("table2", "AVG f_Mean K=64", "roc_auc", 0.94),
    ("table2", "CNN f_Max K=16", "roc_auc", 0.47),
    ("table2", "MOE-P1 f_Mean K=8", "roc_auc", 0.90),
]


@pytest.mark.parametrize(("table", "row", "metric", "value"), TYPED)
def test_stored_figures_match_the_paper(table: str, row: str, metric: str, value: float) -> None:
    found = {f.row: f for f in published_figures(table)}
    assert found[row].metrics[metric] == pytest.approx(value)


@pytest.mark.parametrize("table", ["table2", "table3", "table4"])
def test_every_published_row_is_a_row_of_its_table_and_every_paper_row_has_figures(table: str) -> None:
    rows = {r.name for r in TABLES[table].rows}
    figures = {f.row: f for f in published_figures(table)}
    assert set(figures) == rows
    for f in figures.values():
        assert set(f.metrics) == set(TABLES[table].metrics)


def test_the_tables_have_the_papers_shape() -> None:
    assert len(TABLES["table2"].rows) == 2 * 4 * 3 + 4 and TABLES["table2"].metrics == ("roc_auc",)
    assert len(TABLES["table3"].rows) == 22 and len(TABLES["table4"].rows) == 20
    assert not any(r.name.startswith("AVG") for r in TABLES["table4"].rows)
    assert [r.name for r in TABLES["table5"].rows] == ["CNN f_Mean K=64", "MLP", "MOE-P1 f_Mean K=64"]


def test_table5_from_the_papers_own_predictions_shows_its_pattern(tmp_path: Path, sim_cohort: Path) -> None:
    predictions = resources.files("smearmil.protocols").joinpath("paper_table5.csv")
    out = tmp_path / "t5"
    invoke("reproduce", "table5", sim_cohort, "--set-predictions", str(predictions), "--out", out, "-q")
    rows = json.loads((out / "reproduce.json").read_text())["rows"]
    cnn, moe = rows["CNN f_Mean K=64"]["ours"], rows["MOE-P1 f_Mean K=64"]["ours"]
    # MOE-P1 disagrees less within a patient and its majority is right for all five patients
    assert moe["mean_set_disagreement"]["mean"] < cnn["mean_set_disagreement"]["mean"]
    assert cnn["mean_set_disagreement"]["mean"] == pytest.approx(0.16)
    assert moe["mean_set_disagreement"]["mean"] == pytest.approx(0.12)
    assert moe["set_accuracy"]["mean"] == pytest.approx(22 / 25) and cnn["set_accuracy"]["mean"] == pytest.approx(
        15 / 25
    )
    assert moe["majority_vote_accuracy"]["mean"] == 1.0 and cnn["majority_vote_accuracy"]["mean"] == pytest.approx(0.6)
    assert rows["MLP"]["ours"]["majority_vote_accuracy"]["mean"] == pytest.approx(0.4)
    # the share of patients with any disagreement alone does not tell them apart
    assert cnn["disagreement_rate"]["mean"] == moe["disagreement_rate"]["mean"] == pytest.approx(0.4)


def test_a_majority_tie_goes_to_the_higher_mean_probability_else_is_named_and_counted_wrong() -> None:
    import numpy as np

    from smearmil.protocols.repeatability import majority_vote, summarise_sets

    assert majority_vote([0, 1, 1, 0]) is None and majority_vote([1, 1, 0]) == 1
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.45, 0.55], [0.8, 0.2]])
    assert majority_vote([0, 1, 1, 0], probabilities) == 0  # mean P(reactive) 0.64 > 0.36
    assert majority_vote([0, 1], np.array([[0.6, 0.4], [0.4, 0.6]])) is None  # a tie in both
    rows = [{"model": "CNN", "patient": "A", "set": s, "true": 0, "predicted": p} for s, p in enumerate([1, 0, 0, 1])]
    result = summarise_sets(rows, ["reactive", "tumoral"])
    assert result["patients"]["CNN"]["A"]["majority"] == "tie"
    assert result["models"]["CNN"]["majority_vote_accuracy"] == 0.0 and result["models"]["CNN"]["majority_ties"] == 1


def test_the_papers_inconsistencies_are_noted_under_its_tables() -> None:
    from smearmil.protocols.reproduce import paper_notes

    assert "0.95" in paper_notes("table2")[0] and "0.9416" in paper_notes("table2")[0]
    assert any("hard 0/1 calls" in n for n in paper_notes("table4")) and paper_notes("table5") == []


def test_the_second_papers_rows_say_what_each_encoder_learnt_from() -> None:
    from smearmil.protocols.reproduce import row_names

    rows = row_names("aml-encoders")
    assert "supervised (single-cell labels): the paper's baseline" in rows
    assert "patient-label MIL encoder (not in the paper)" in rows and "supervised" not in rows
    assert {"simclr", "swav", "dino"} <= set(rows)
    assert published_figures("aml-encoders") == []  # its text has no results table
