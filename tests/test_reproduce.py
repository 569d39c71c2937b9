"""``smearmil reproduce``: a paper table's rows on identical folds, published figures beside ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def test_table3_lists_every_row_of_the_paper_beside_its_figures(tmp_path: Path) -> None:
    # 24 patients: 2 folds leave 6 training patients of each class for the baselines' inner CVs
    cohort = simulate(
        tmp_path / "c", SimulationConfig(patients=24, cells_min=4, cells_max=6, size=32, seed=5), progress=False
    )
    out = tmp_path / "t3"
    args = ["reproduce", "table3", cohort, "--folds", "2", "--epochs", "1", "--out", out]
    invoke(*args, "--cache-dir", tmp_path / "k", "-q")
    result = json.loads((out / "reproduce.json").read_text())
    compared = json.loads((out / "compare" / "summary.json").read_text())["methods"]
    rows = result["rows"]
    assert set(rows) == {r.name for r in TABLES["table3"].rows}  # every row of the paper
    table = (out / "table.md").read_text()
    listed = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| ")][1:]
    assert listed == [r.name for r in TABLES["table3"].rows]  # in the paper's order
    config = {m.label: m.name for m in compare_config("table3", "cpu").methods}
    for label, method in compared.items():  # ours are the comparison's test-fold figures, row by row
        ours = rows[config[label]]["ours"]["balanced_accuracy"]
        assert ours == method["metrics"]["balanced_accuracy"]
    moe = rows["MOE-P1 f_Mean K=32"]
    assert moe["published"] == {
        "sensitivity": 0.8621,
        "specificity": 0.8462,
        "accuracy": 0.8571,
        "balanced_accuracy": 0.8541,
    }
    assert moe["ours"] and "not_run" not in moe
    for name in ("Biologists", "MOE-P1 f_Mean K=64", "DeepMIL K=64"):  # published, not run at this budget
        assert rows[name]["ours"] == {} and rows[name]["not_run"] and rows[name]["published"]
    notes = "\n".join(result["notes"])
    assert "not run at budget cpu: Biologists: the twelve biologists' reading" in notes
    assert "one CPU-sized model (K=8) stands for K=32 and K=64" in notes and "24 patients" in notes
    assert "| MOE-P1 f_Mean K=64 | imgs, attrs | not run | 0.862 |" in table
    header = (out / "table.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["row", "data", "sensitivity_ours_mean", "sensitivity_ours_std", "sensitivity_published"]


def test_a_figures_file_adds_to_the_stored_ones(tmp_path: Path) -> None:
    figures = tmp_path / "figures.csv"
    figures.write_text(
        "table,row,metric,value,source\n"
        "table4,DeepMIL K=32,roc_auc,0.9,my copy\n"
        "table4,my own row,roc_auc,0.7,my copy\n"
        "table2,MLP,roc_auc,0.8,my copy\n"
    )
    with pytest.raises(ValueError, match="'my own row' is not a row of table4"):
        published_figures("table4", figures)
    figures.write_text("table,row,metric,value,source\ntable4,DeepMIL K=32,roc_auc,0.9,my copy\n")
    found = {f.row: f for f in published_figures("table4", figures)}
    assert found["DeepMIL K=32"].metrics == {"roc_auc": 0.9} and found["DeepMIL K=32"].source == "my copy"
    assert found["CNN f_Mean K=64"].metrics == {"roc_auc": 0.9629}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Table4,SVM,roc_auc,0.7", "row 3: unknown table 'Table4'"),
        ("table4,SVM,bal_acc,0.7", "row 3: table4 shows roc_auc, not 'bal_acc'"),
        ("table3,SVM,macro_f1,0.7", "row 3: table3 shows .*, not 'macro_f1'"),
        ("table4,EMDD,roc_auc,0.7", "row 3: 'EMDD' is not a row of table4; its rows: Biologists; AdaBoost"),
        ("table4,SVM,roc_auc,85.41", r"row 3: 85.41 is not in \[0, 1\] \(a percentage\? write 0.8541\)"),
        ("table4,SVM,roc_auc,high", "row 3: value 'high' is not a number"),
        ("table4,DeepMIL K=32,roc_auc,0.8", "row 3: table4 / DeepMIL K=32 / roc_auc is given twice \\(rows 2 and 3\\)"),
    ],
)
def test_every_line_of_a_figures_file_is_checked(tmp_path: Path, line: str, message: str) -> None:
    figures = tmp_path / "figures.csv"
    figures.write_text(f"table,row,metric,value,source\ntable4,DeepMIL K=32,roc_auc,0.9,x\n{line},x\n")
    with pytest.raises(ValueError, match=f"figures.csv, {message}"):
        published_figures("table2", figures)


def test_epochs_shorten_the_paper_rows_too() -> None:
    config = compare_config("table2", "paper", overrides=epoch_overrides(2))
    notes = [budget_note(m) for m in config.methods]
    assert all(n and "2 epochs" in n and "iterations" not in n for n in notes)
    assert "ResNet-K with K=8, 224 px" in str(notes[0]) and "220,000 iterations" in str(
        budget_note(compare_config("table2", "paper").methods[0])
    )


@pytest.mark.parametrize("table", ["table2", "table3", "table4", "table5"])
def test_each_budget_names_the_faithful_preset_or_the_cpu_one(table: str) -> None:
    rows = TABLES[table].rows
    paper = {r.name: r.spec("paper") for r in rows}
    cpu = {r.name: r.spec("cpu") for r in rows}
    for name, method in paper.items():
        if method is None:  # published only
            assert cpu[name] is None and name == "Biologists"
        elif method.config:  # deep rows: the paper's own row (cnn-mean-k32, ...) or a shipped CPU preset
            assert not method.config.startswith("cpu-")
            assert cpu[name] is None or cpu[name].config.startswith("cpu-")
        else:
            assert method == cpu[name]
    assert all(r.not_run("cpu") for r in rows if cpu[r.name] is None)


def test_an_unknown_table_is_refused_with_the_choices(sim_cohort: Path, tmp_path: Path) -> None:
    output = refused("reproduce", "table9", sim_cohort, "--out", tmp_path / "x")
    assert "table2, table3, table4, table5, aml-encoders" in output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--run", "somewhere"], "--run, --mode, --sets-file and --set-predictions are for table5"),
        (["--mode", "given"], "--run, --mode, --sets-file and --set-predictions are for table5"),
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


def test_the_mixtures_paradigms_train_on_equal_budgets() -> None:
    """P1, P2 and P3 of the CPU rows make as many passes over the images at one learning rate (the MLP stage
    sees only attributes), so the table compares paradigms, not schedules."""
    from smearmil.training.config.run import load_config

    rows = {r.name: r.spec("cpu") for r in TABLES["table3"].rows if r.name.startswith("MOE")}
    passes = {}
    for name, method in rows.items():
        if method is None:
            continue
        config = load_config(method.config, method.overrides)
        stages = ["moe"] if config.model.params.paradigm == "P1" else ["cnn", "moe"]
        passes[name] = sum(config.train.for_stage(s).epochs for s in stages)
        assert {config.train.for_stage(s).lr for s in stages} == {0.001}
    assert sorted(passes) == ["MOE-P1 f_Mean K=32", "MOE-P2 f_Mean K=32", "MOE-P3 f_Mean K=32"]
    assert set(passes.values()) == {25}, passes


@pytest.mark.slow
def test_aml_encoders_fine_tune_each_encoder_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from smearmil.protocols import ssl_cv

    # two encoders for speed: random (fine-tuned, the MIL model from scratch) and the patient-label one
    monkeypatch.setattr(ssl_cv, "applicable_kinds", lambda cohort, ssl: ["random", "supervised"])
    cohort = simulate(
        tmp_path / "cohort", SimulationConfig(patients=6, cells_min=3, cells_max=4, size=32, seed=5), progress=False
    )
    common = ["--budget", "cpu", "--folds", 2, "--epochs", 1, "--json"]
    tuned = json.loads(invoke("reproduce", "aml-encoders", cohort, *common, "--out", tmp_path / "tuned"))
    assert "no pre-training: the MIL model from scratch (not in the paper)" in tuned["rows"]
    assert not any("patient-label MIL encoder" in row for row in tuned["rows"])  # it is that model
    assert any("fine-tuned end to end" in note for note in tuned["notes"])
