"""The simulator: byte-reproducible, readable by the lymphocytosis reader, truth aligned with images."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest

from smearmil.data import load_cohort
from smearmil.data.images import read_rgb
from smearmil.data.simulate import SimulationConfig, read_truth, simulate
from smearmil.utils.outputs import OutputRefused


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    config = SimulationConfig(patients=6, cells_min=2, cells_max=5, size=32, seed=7, classes=3)
    a = simulate(tmp_path / "a", config, progress=False)
    b = simulate(tmp_path / "b", config, progress=False, workers=1)  # worker count must not matter
    assert _same_tree(a, b)
    c = simulate(
        tmp_path / "c",
        SimulationConfig(patients=6, cells_min=2, cells_max=5, size=32, seed=8, classes=3),
        progress=False,
    )
    assert not _same_tree(a, c)


def test_cohort_reads_back_with_classes_attributes_and_truth(sim_cohort: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    assert len(cohort) == 12 and cohort.class_names == ["reactive", "tumoral"]
    assert cohort.class_counts() == {"reactive": 6, "tumoral": 6}
    truth = read_truth(sim_cohort)
    assert set(truth) == {str(p.relative_to(sim_cohort)) for pat in cohort.patients for p in pat.images}
    for patient in cohort.patients:
        flags = [truth[str(p.relative_to(sim_cohort))] for p in patient.images]
        assert any(flags) == (patient.label == "tumoral")  # only diseased bags hold abnormal cells
    ages = cohort.attribute_matrix(names=["age"])[:, 0]
    assert np.all((ages > 17) & (ages < 101))
    assert read_rgb(cohort.patients[0].images[0]).shape == (32, 32, 3)


def test_abnormal_cells_differ_from_normal_ones(tmp_path: Path) -> None:
    root = simulate(
        tmp_path / "s",
        SimulationConfig(
            patients=4, cells_min=40, cells_max=40, size=48, seed=1, classes=2, abnormal_fraction=(0.5, 0.5)
        ),
        progress=False,
    )
    truth = read_truth(root)
    # large abnormal cells: more dark (nucleus) pixels
    dark = {f: (read_rgb(root / f).mean(axis=2) < 120).mean() for f in truth}
    abnormal = [dark[f] for f, a in truth.items() if a]
    normal = [dark[f] for f, a in truth.items() if not a]
    assert np.mean(abnormal) > 1.3 * np.mean(normal)


def test_multi_class_cohort_has_one_abnormality_per_class(tmp_path: Path) -> None:
    root = simulate(
        tmp_path / "m",
        SimulationConfig(patients=8, cells_min=6, cells_max=6, size=32, classes=4, abnormal_fraction=(0.5, 0.5)),
        progress=False,
    )
    cohort = load_cohort(root, progress=False)
    assert cohort.class_names == ["class_0", "class_1", "class_2", "class_3"]
    kinds: dict[str, set[str]] = {}
    for line in (root / "cell_truth.csv").read_text().splitlines()[1:]:
        pid, _, _, kind = line.split(",")
        kinds.setdefault(cohort[pid].label or "", set()).add(kind)
    assert kinds == {
        "class_0": {"normal"},
        "class_1": {"normal", "large_nucleolus"},
        "class_2": {"normal", "cleaved"},
        "class_3": {"normal", "granular"},
    }


def test_expert_split_makes_each_modality_informative_for_other_patients(tmp_path: Path) -> None:
    root = simulate(
        tmp_path / "e",
        SimulationConfig(patients=40, cells_min=4, cells_max=4, size=16, scenario="expert-split"),
        progress=False,
    )
    cohort = load_cohort(root, progress=False)
    truth = read_truth(root)
    for i, patient in enumerate(sorted(cohort.patients, key=lambda p: p.id)):
        has_abnormal = any(truth[str(p.relative_to(root))] for p in patient.images)
        if i % 2:  # attribute-informative: normal-looking cells only, attributes far apart by class
            assert not has_abnormal
            assert (patient.attributes["age"] > 60) == (patient.label == "tumoral")
        else:  # image-informative: abnormal cells tell the class, attributes sit in one ambiguous band
            assert has_abnormal == (patient.label == "tumoral")
            assert 45 < patient.attributes["age"] < 80 and 5 < patient.attributes["lymph_count"] < 15


def test_bad_configs_and_existing_output(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(cells_min=5, cells_max=2)
    with pytest.raises(ValueError):
        SimulationConfig(classes=1)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    tiny = SimulationConfig(patients=2, cells_min=1, cells_max=1, size=16)
    for overwrite in (False, True):  # a folder smearmil did not write survives even --overwrite
        with pytest.raises(OutputRefused, match="not a cohort smearmil simulated"):
            simulate(tmp_path / "x", tiny, progress=False, overwrite=overwrite)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
    simulate(tmp_path / "ours", tiny, progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        simulate(tmp_path / "ours", tiny, progress=False)
    simulate(
        tmp_path / "ours",
        SimulationConfig(patients=3, cells_min=1, cells_max=1, size=16),
        progress=False,
        overwrite=True,
    )
    assert len(list((tmp_path / "ours" / "trainset").iterdir())) == 4  # 3 patients and the table
