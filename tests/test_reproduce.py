"""``smearmil reproduce``: a paper table's rows on identical folds, published figures beside ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from smearmil.data.simulate import SimulationConfig, simulate
from smearmil.protocols.reproduce import TABLES, budget_note, compare_config, epoch_overrides, published_figures

from .conftest import invoke


def refused(*args: object) -> str:
    """Run the command line, which must fail; its output."""
    from typer.testing import CliRunner

    from smearmil.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code != 0
    return result.output


def test_table3_puts_the_published_figures_beside_ours(tmp_path: Path) -> None:
    # 24 patients: 2 folds leave 6 training patients of each class for the baselines' inner 5-fold CV
    cohort = simulate(
        tmp_path / "c", SimulationConfig(patients=24, cells_min=4, cells_max=6, size=32, seed=5), progress=False
    )
    out = tmp_path / "t3"
    args = ["reproduce", "table3", cohort, "--folds", "2", "--epochs", "1", "--out", out]
    invoke(*args, "--cache-dir", tmp_path / "k", "-q")
    result = json.loads((out / "reproduce.json").read_text())
    compared = json.loads((out / "compare" / "summary.json").read_text())["methods"]
    rows = result["rows"]
    assert set(compared) < set(rows)  # every row run, plus the published-only ones
    for name, method in compared.items():  # ours are the comparison's test-fold figures, row by row
        assert rows[name]["ours"]["balanced_accuracy"] == method["metrics"]["balanced_accuracy"]
    best = rows["the paper's best model (abstract)"]
    assert best["published"]["balanced_accuracy"] == pytest.approx(0.8541) and best["ours"] == {}
    assert "ieeexplore" in best["source"]
    assert result["split"] == "test" and result["budget"] == "cpu" and result["protocol"].startswith("2-fold CV")
    notes = "\n".join(result["notes"])
    moe = "MOE (P2): `cpu-moe-cnn`, ResNet-K with K=8, 112 px, centre crop 64 px, 1 epoch (stages: mlp 300 epochs"
    assert moe in notes and "24 patients" in notes and "`--budget paper` trains the image models" in notes
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["budget"] == "cpu" and len(config["methods"]) == len(compared) and config["epochs"] == 1
    table = (out / "table.md").read_text()
    assert "| bal. acc: ours | published |" in table and "| naive Bayes | attrs | " in table
    assert "0.854" in table and "**What differs**" in table
    header = (out / "table.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == [
        "row",
        "data",
        "balanced_accuracy_ours_mean",
        "balanced_accuracy_ours_std",
        "balanced_accuracy_published",
    ]


def test_a_figures_file_adds_to_the_stored_ones(tmp_path: Path) -> None:
    figures = tmp_path / "figures.csv"
    figures.write_text(
        "table,row,metric,value,source\n"
        "table4,attention MIL,roc_auc,0.9,my copy\n"
        "table4,MI-SVM [imgs],balanced_accuracy,0.7,my copy\n"
        "table2,MLP,accuracy,0.8,my copy\n"
    )
    found = {f.row: f for f in published_figures("table4", figures)}
    assert found["attention MIL"].metrics == {"balanced_accuracy": 0.8289, "roc_auc": 0.9}
    assert found["MI-SVM [imgs]"].metrics == {"balanced_accuracy": 0.7} and "MLP" not in found
    assert found["MI-SVM [imgs]"].source == "my copy"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Table4,EM-DD [imgs],accuracy,0.7", "row 3: unknown table 'Table4'"),
        ("table4,EM-DD [imgs],bal_acc,0.7", "row 3: table4 shows balanced_accuracy, .*, not 'bal_acc'"),
        ("table3,naive Bayes,macro_f1,0.7", "row 3: table3 shows .*, not 'macro_f1'"),
        ("table4,EMDD,accuracy,0.7", "row 3: 'EMDD' is not a row of table4; its rows: MI-SVM \\[imgs\\]"),
        ("table4,EM-DD [imgs],accuracy,85.41", r"row 3: 85.41 is not in \[0, 1\] \(a percentage\? write 0.8541\)"),
        ("table4,EM-DD [imgs],accuracy,high", "row 3: value 'high' is not a number"),
        (
            "table4,attention MIL,roc_auc,0.8",
            "row 3: table4 / attention MIL / roc_auc is given twice \\(rows 2 and 3\\)",
        ),
    ],
)
def test_every_line_of_a_figures_file_is_checked(tmp_path: Path, line: str, message: str) -> None:
    figures = tmp_path / "figures.csv"
    figures.write_text(f"table,row,metric,value,source\ntable4,attention MIL,roc_auc,0.9,x\n{line},x\n")
    with pytest.raises(ValueError, match=f"figures.csv, {message}"):
        published_figures("table2", figures)


def test_epochs_shorten_the_paper_rows_too() -> None:
    config = compare_config("table2", "paper", overrides=epoch_overrides(2))
    notes = [budget_note(m) for m in config.methods]
    assert all(n and "2 epochs" in n and "iterations" not in n for n in notes)
    assert "ResNet-K with K=32, 224 px" in str(notes[1]) and "220,000 iterations" in str(
        budget_note(compare_config("table2", "paper").methods[1])
    )


@pytest.mark.parametrize("table", ["table2", "table3", "table4", "table5"])
def test_each_budget_names_the_faithful_preset_or_the_cpu_one(table: str) -> None:
    paper = {m.label: m for m in compare_config(table, "paper").methods}
    cpu = {m.label: m for m in compare_config(table, "cpu").methods}
    assert paper.keys() == cpu.keys() == {r.spec("cpu").label for r in TABLES[table].rows}
    for label, method in paper.items():
        if method.config:  # deep rows: a paper row (cnn-...-k32, mlp, ...) against a shipped CPU preset
            assert not method.config.startswith("cpu-") and cpu[label].config.startswith("cpu-")
        else:
            assert method == cpu[label]


def test_an_unknown_table_is_refused_with_the_choices(sim_cohort: Path, tmp_path: Path) -> None:
    output = refused("reproduce", "table9", sim_cohort, "--out", tmp_path / "x")
    assert "table2, table3, table4, table5, aml-encoders" in output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--run", "somewhere"], "--run, --mode and --sets-file are for table5"),
        (["--mode", "given"], "--run, --mode and --sets-file are for table5"),
    ],
)
def test_options_of_table5_are_refused_elsewhere(
    sim_cohort: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    output = refused("reproduce", "table3", sim_cohort, "--out", tmp_path / "x", *extra)
    assert message in output and not (tmp_path / "x").exists()


def test_table5_refuses_a_mode_it_cannot_honour_before_training(sim_cohort: Path, tmp_path: Path) -> None:
    for mode, message in (("given", "fewer than two acquisitions"), ("foo", "--mode must be auto, given or random")):
        output = refused("reproduce", "table5", sim_cohort, "--mode", mode, "--out", tmp_path / "x")
        assert message in output and not (tmp_path / "x").exists()
