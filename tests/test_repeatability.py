"""Repeatability as the paper's Table 5: given acquisitions by default, one row per standalone model, random
subsets labelled as such."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from smearmil.data.simulate import SimulationConfig, simulate

from .conftest import invoke

TINY = "image: {size: 32, crop: null}\ntrain: {epochs: 2, lr_steps: []}\n"


@pytest.fixture(scope="module")
def two_acquisitions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A cohort whose every patient has two acquisitions (``<ID>/acq1``, ``<ID>/acq2``), and runs of a
    CNN and an MLP trained on it, each on its own, on the same hold-out split."""
    base = tmp_path_factory.mktemp("table5")
    root = simulate(
        base / "cohort", SimulationConfig(patients=16, cells_min=6, cells_max=8, size=32, seed=6), progress=False
    )
    for patient in sorted((root / "trainset").iterdir()):
        if patient.is_dir():
            for i, image in enumerate(sorted(patient.glob("*.jpg"))):
                (patient / f"acq{i % 2 + 1}").mkdir(exist_ok=True)
                shutil.move(image, patient / f"acq{i % 2 + 1}" / image.name)
    (base / "cnn.yaml").write_text("base: cpu-cnn\n" + TINY)
    (base / "mlp.yaml").write_text("base: cpu-mlp\ntrain: {epochs: 20}\n")
    for name in ("cnn", "mlp"):
        args = ["train", root, "--config", base / f"{name}.yaml", "--out", base / name, "--cache-dir", base / "k"]
        invoke(*args, "-q")
    return root, base / "cnn", base / "mlp"


def test_given_acquisitions_are_the_default_and_each_row_is_a_standalone_model(
    two_acquisitions: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, cnn, mlp = two_acquisitions
    args = ["repeatability", cnn, mlp, root, "--out", tmp_path, "--cache-dir", cnn.parent / "k", "-q"]
    printed = invoke(*args)
    assert "given acquisitions" in printed
    result = json.loads((tmp_path / "repeatability.json").read_text())
    assert result["image_sets"] == "given acquisitions" and result["sets"] == "given"
    assert set(result["models"]) == {"CNN", "MLP"} and result["runs"] == [str(cnn), str(mlp)]
    test_patients = json.loads((cnn / "splits.json").read_text())["folds"][0]["test"]
    for model in ("CNN", "MLP"):
        entries = result["patients"][model]
        assert set(entries) == set(test_patients) and all(e["sets"] == 2 for e in entries.values())
    assert result["models"]["MLP"]["disagreement_rate"] == 0.0  # the attributes do not change between acquisitions


def test_random_subsets_stay_available_and_say_so(two_acquisitions: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, cnn, _ = two_acquisitions
    args = ["repeatability", cnn, root, "--mode", "random", "--sets", "3", "--out", tmp_path]
    invoke(*args, "--cache-dir", cnn.parent / "k", "-q")
    result = json.loads((tmp_path / "repeatability.json").read_text())
    assert result["image_sets"] == "random overlapping subsets of one acquisition" and result["sets"] == 3
    assert all(e["sets"] == 3 for e in result["patients"]["CNN"].values())


def test_a_sets_file_maps_cells_to_acquisitions(two_acquisitions: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, cnn, _ = two_acquisitions
    cells = sorted((root / "trainset").rglob("*.jpg"))
    sets_file = tmp_path / "sets.csv"
    # paths relative to the CSV's folder; every patient has files of the same names (P000_000.jpg, ...)
    rows = "".join(f"{os.path.relpath(c, tmp_path)},{'AB'[i % 3 == 0]}\n" for i, c in enumerate(cells))
    sets_file.write_text("file,set\n" + rows)
    args = ["repeatability", cnn, root, "--sets-file", sets_file, "--out", tmp_path / "r", "--cache-dir"]
    invoke(*args, cnn.parent / "k", "-q")
    result = json.loads((tmp_path / "r" / "repeatability.json").read_text())
    assert result["image_sets"] == "given acquisitions"
    assert all(e["sets"] == 2 for e in result["patients"]["CNN"].values())


def test_reproduce_table5_on_given_runs_uses_the_acquisitions(
    two_acquisitions: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, cnn, mlp = two_acquisitions
    args = ["reproduce", "table5", root, "--run", cnn, "--run", mlp, "--out", tmp_path / "t5"]
    invoke(*args, "--cache-dir", cnn.parent / "k", "-q")
    result = json.loads((tmp_path / "t5" / "reproduce.json").read_text())
    measured = json.loads((tmp_path / "t5" / "repeatability.json").read_text())
    assert set(result["rows"]) == {"CNN f_Mean K=64", "MLP", "MOE-P1 f_Mean K=64"}  # the paper's rows
    assert measured["image_sets"] == "given acquisitions"
    for name, kind in (("CNN f_Mean K=64", "CNN"), ("MLP", "MLP")):  # the runs given stand in their rows
        for metric in ("mean_set_disagreement", "set_accuracy", "majority_vote_accuracy", "disagreement_rate"):
            assert result["rows"][name]["ours"][metric]["mean"] == measured["models"][kind][metric]
    assert result["rows"]["MOE-P1 f_Mean K=64"]["ours"] == {}
    assert any("image sets: given acquisitions" in n for n in result["notes"])
    assert any(str(cnn) in n for n in result["notes"]) and result["budget"] is None
    assert result["protocol"] == "the runs given; one figure per row over the held-out patients' image sets"
    table = (tmp_path / "t5" / "table.md").read_text()
    assert "| sets disagreeing with the majority (mean): ours | published |" in table and "| MLP | " in table
    assert "mean ± std" not in table and "budget" not in table.split("**What differs**")[0]
