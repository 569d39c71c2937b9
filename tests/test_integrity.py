"""Nothing lost, nothing stale, nothing leaked: one test per probe of the integrity issue, each on files
built in a temporary folder, asserting the exact outcome."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from smearmil.cli import app
from smearmil.data import DataError, load_cohort
from smearmil.data.cache import IMAGES_FILE, build_cache
from smearmil.data.images import Preprocessing
from smearmil.data.simulate import SimulationConfig, simulate
from smearmil.data.splits import SplitPlan, make_splits
from smearmil.protocols.cv import CVSettings, run_cv
from smearmil.training.config import load_config
from smearmil.training.methods import method_of
from smearmil.utils.atomic import write_json
from smearmil.utils.outputs import MARKER, OutputRefused

from .conftest import run_in_process, write_image, write_lymph_cohort

runner = CliRunner()
CLI = [sys.executable, "-m", "smearmil"]
TINY = {"image": {"size": 32, "crop": None}, "model": {"encoder": {"k": 2}}, "train": {"epochs": 1}}


def _invoke(args: list[str]) -> object:
    return runner.invoke(app, args, env={"COLUMNS": "400"})  # wide: messages on one line


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, check=False)


def _tiny_config(tmp_path: Path, name: str = "tiny.yaml", epochs: int = 1) -> Path:
    path = tmp_path / name
    path.write_text(
        f"base: cpu-cnn\nimage: {{size: 32, crop: null}}\nmodel: {{encoder: {{k: 2}}}}\n"
        f"train: {{epochs: {epochs}, lr_steps: []}}\n"
    )
    return path


# --- 1. never delete what the tool did not make ----------------------------------------------------------------


def test_features_extract_into_a_folder_it_did_not_write_leaves_it_untouched(sim_cohort: Path, tmp_path: Path) -> None:
    victim = tmp_path / "my-cohort"
    shutil.copytree(sim_cohort, victim)
    (victim / MARKER).unlink()  # a lab's own cohort: smearmil did not write it
    before = sorted(p.relative_to(victim) for p in victim.rglob("*"))
    for extra in ([], ["--overwrite"]):
        result = _invoke(
            [
                "features",
                "extract",
                str(sim_cohort),
                "--encoder",
                "random:cpu-ssl",
                "--out",
                str(victim),
                "--cache-dir",
                str(tmp_path / "k"),
                "-q",
                *extra,
            ],
        )
        assert result.exit_code == 2, result.output
        assert "was not written by smearmil" in result.output and "left" in result.output
    assert sorted(p.relative_to(victim) for p in victim.rglob("*")) == before


def test_simulate_overwrite_replaces_only_a_simulated_cohort(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    result = _invoke(
        ["simulate", str(mine), "--patients", "4", "--cells-per-patient", "1:1", "--size", "16", "--overwrite", "-q"],
    )
    assert result.exit_code == 2 and "not a cohort smearmil simulated" in result.output
    assert (mine / "notes.txt").read_text() == "keep"


# --- 2. run fingerprints ---------------------------------------------------------------------------------------


def test_a_cv_rerun_with_another_seed_refuses_naming_the_seed(sim_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    config = load_config("cpu-cnn", TINY)
    out = tmp_path / "cv"
    run_cv(cohort, method_of(config), out, CVSettings(folds=2, seed=0, cache_dir=tmp_path / "k", progress=False))
    first = (out / "predictions.csv").read_text()
    with pytest.raises(OutputRefused, match=r"seed: 0 -> 1.*--overwrite"):
        run_cv(cohort, method_of(config), out, CVSettings(folds=2, seed=1, cache_dir=tmp_path / "k", progress=False))
    assert (out / "predictions.csv").read_text() == first  # the finished run is intact
    again = run_cv(
        cohort, method_of(config), out, CVSettings(folds=2, seed=0, cache_dir=tmp_path / "k", progress=False)
    )  # resumes
    assert (out / "predictions.csv").read_text() == first and again.summary["split"] == "test"
    run_cv(
        cohort,
        method_of(config),
        out,
        CVSettings(folds=2, seed=1, cache_dir=tmp_path / "k", progress=False, overwrite=True),
    )
    assert json.loads((out / MARKER).read_text())["fingerprint"]["config"]["seed"] == 1


def test_train_with_more_epochs_into_a_finished_run_refuses_naming_the_field(sim_cohort: Path, tmp_path: Path) -> None:
    args = ["train", str(sim_cohort), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "k"), "-q"]
    assert _invoke([*args, "--config", str(_tiny_config(tmp_path, "two.yaml", 2))]).exit_code == 0
    result = _invoke([*args, "--config", str(_tiny_config(tmp_path, "five.yaml", 5))])
    assert result.exit_code == 2 and "train.epochs: 2 -> 5" in result.output and "config.name" not in result.output
    assert json.loads((tmp_path / "run" / "model.json").read_text())["config"]["train"]["epochs"] == 2


def test_a_replaced_run_never_shows_the_old_summary_beside_new_inputs(
    sim_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    config = load_config("cpu-cnn", TINY)
    out = tmp_path / "cv"
    run_cv(cohort, method_of(config), out, CVSettings(folds=2, seed=0, cache_dir=tmp_path / "k", progress=False))
    assert (out / "summary.json").is_file()

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for a kill during the new run's training

    monkeypatch.setattr("smearmil.training.methods.run.train_fold", killed)
    with pytest.raises(KeyboardInterrupt):
        run_cv(
            cohort,
            method_of(config),
            out,
            CVSettings(folds=2, seed=1, cache_dir=tmp_path / "k", progress=False, overwrite=True),
        )
    assert not (out / "summary.json").exists() and not (out / "predictions.csv").exists()
    assert "seed: 1" in (out / "config.yaml").read_text()  # the folder holds only the new run's inputs


# --- 3. safe names ---------------------------------------------------------------------------------------------


def test_fold_names_cannot_leave_the_output_folder(sim_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    plan = make_splits(cohort, "kfold", folds=2, seed=0).to_json()
    for bad in ("../../escaped", "/tmp/absolute", "..", "a/b"):
        plan["folds"][0]["name"] = bad
        splits = tmp_path / "splits.json"
        splits.write_text(json.dumps(plan))
        with pytest.raises(DataError, match="cannot be used as a folder"):
            SplitPlan.load(splits)
        result = _invoke(
            [
                "cv",
                str(sim_cohort),
                "--config",
                str(_tiny_config(tmp_path)),
                "--splits",
                str(splits),
                "--out",
                str(tmp_path / "out" / "cv"),
                "-q",
            ],
        )
        assert result.exit_code == 2 and "cannot be used as a folder" in result.output
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/absolute").exists()


# --- 4. cross-patient duplicates -------------------------------------------------------------------------------


def test_a_cell_in_two_patients_is_an_error_naming_both(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path / "copy")
    shutil.copy(root / "trainset" / "P1" / "P1_0.jpg", root / "trainset" / "P3" / "copied.jpg")
    with pytest.raises(DataError) as caught:
        load_cohort(root, progress=False)
    found = [p for p in caught.value.problems if p.kind == "duplicate_across_patients"]
    assert len(found) == 1 and "patient P3" in found[0].message and "P1_0.jpg" in found[0].message
    assert "patient P1" in found[0].message


def test_a_symlinked_patient_folder_or_image_is_caught_and_a_dangling_link_warned(tmp_path: Path) -> None:
    folder = write_lymph_cohort(tmp_path / "folder")
    shutil.rmtree(folder / "trainset" / "P4")
    (folder / "trainset" / "P4").symlink_to(folder / "trainset" / "P2", target_is_directory=True)
    with pytest.raises(DataError) as caught:
        load_cohort(folder, progress=False)
    assert any(
        p.kind == "duplicate_across_patients" and "patient P4" in p.message and "patient P2" in p.message
        for p in caught.value.problems
    )
    image = write_lymph_cohort(tmp_path / "image")
    (image / "trainset" / "P3" / "linked.jpg").symlink_to(image / "trainset" / "P1" / "P1_1.jpg")
    with pytest.raises(DataError, match="duplicate_across_patients|same content"):
        load_cohort(image, progress=False)
    dangling = write_lymph_cohort(tmp_path / "dangling")
    (dangling / "trainset" / "P1" / "gone.jpg").symlink_to(tmp_path / "nothing.jpg")
    cohort = load_cohort(dangling, progress=False)
    warned = [p for p in cohort.problems if p.kind == "dangling_link"]
    assert len(warned) == 1 and warned[0].where.endswith("gone.jpg") and warned[0].severity == "warning"
    assert cohort["P1"].n_cells == 3


# --- 5. labels and numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["1.7", "0.9", "inf", "-inf", "nan", "2", "1e400", "tumoral?", "1.0", "+1", "1e0"])
def test_a_label_that_is_not_a_class_is_an_error_by_line(tmp_path: Path, label: str) -> None:
    rows = [
        ("P1", "0", "M", "1/30/1978", "5.1"),
        ("P2", label, "F", "19-09-1944", "12.5"),
        ("P3", "1", "F", "3/22/1960", "4.2"),
    ]
    with pytest.raises(DataError) as caught:
        load_cohort(write_lymph_cohort(tmp_path, rows=rows), progress=False)
    assert [p.where for p in caught.value.problems if p.kind == "unknown_label"] == [
        "trainset_true.csv line 3 (patient P2)"
    ]


def test_integer_labels_and_class_names_are_read(tmp_path: Path) -> None:
    rows = [
        ("P1", "0", "M", "1/30/1978", "5.1"),
        ("P2", "1", "F", "19-09-1944", "12.5"),
        ("P3", "tumoral", "F", "3/22/1960", "4.2"),
        ("P4", "-1", "M", "11/3/1933", "30"),
    ]
    cohort = load_cohort(write_lymph_cohort(tmp_path, rows=rows), progress=False)
    assert [p.label for p in cohort.patients] == ["reactive", "tumoral", "tumoral", None]


def test_absurd_counts_and_short_rows_are_errors_by_line(tmp_path: Path) -> None:
    rows = [
        ("P1", "0", "M", "1/30/1978", "5.1"),
        ("P2", "1", "F", "19-09-1944", "1500"),
        ("P3", "0", "f", "3/22/1960"),
        ("P4", "1", "M", "11/3/1933", "30.0"),
    ]
    with pytest.raises(DataError) as caught:
        load_cohort(write_lymph_cohort(tmp_path, rows=rows), progress=False)
    by_kind = {(p.kind, p.where) for p in caught.value.problems if p.severity == "error"}
    assert ("implausible_attribute", "trainset_true.csv line 3 (patient P2)") in by_kind
    assert ("malformed_row", "trainset_true.csv line 4") in by_kind


# --- 6. no traceback for a user-caused failure -----------------------------------------------------------------


@pytest.mark.slow
def test_brackets_and_dollars_in_names_labels_and_paths_print_as_they_are(tmp_path: Path) -> None:
    root = tmp_path / "a[" / "b]" / "cohort"  # a path holding "[/]"
    simulate(
        root,
        SimulationConfig(
            patients=10, cells_min=2, cells_max=3, size=16, seed=2, class_names=["re[/]active", "tu$mo$ral"]
        ),
        progress=False,
        workers=1,
    )
    config = _tiny_config(tmp_path)
    checks = [
        ["data", "inspect", root],
        ["cv", root, "--config", config, "--folds", "2", "--out", tmp_path / "cv", "--cache-dir", tmp_path / "k", "-q"],
        ["predict", tmp_path / "cv", root / "trainset" / "P000", "--out", tmp_path / "p"],
        ["report", tmp_path / "cv", "--cache-dir", tmp_path / "k", "-q"],
    ]
    for args in checks:  # in-process: Rich prints to the same captured streams as in a terminal
        done = run_in_process(*args)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
    assert "re[/]active" in run_in_process("data", "inspect", root).stdout


def test_a_dollar_in_a_class_name_does_not_break_the_report_plots(tmp_path: Path) -> None:
    from smearmil.evaluation.plots import confusion_plot, roc_plot

    png = confusion_plot([[3, 1], [0, 4]], ["$reactive", "tu$mo$ral"], tmp_path / "c.png")
    assert png.stat().st_size > 1000
    roc_plot({"$x$": (np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.4, 0.6]))}, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_a_decompression_bomb_is_a_named_skip(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path)
    Image.new("L", (20000, 20000)).save(root / "trainset" / "P1" / "huge.png")
    cohort = load_cohort(root, progress=False)
    skipped = [p for p in cohort.problems if p.kind == "unreadable_image"]
    assert len(skipped) == 1 and skipped[0].where.endswith("huge.png") and "pixels" in skipped[0].message
    assert cohort["P1"].n_cells == 3


def test_foreign_or_misshapen_checkpoints_are_named_errors(sim_cohort: Path, tmp_path: Path) -> None:
    from smearmil.training.trained import TrainedModel

    args = [
        "train",
        str(sim_cohort),
        "--config",
        str(_tiny_config(tmp_path)),
        "--out",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tmp_path / "k"),
        "-q",
    ]
    assert _invoke(args).exit_code == 0
    model_json = tmp_path / "run" / "model.json"
    meta = json.loads(model_json.read_text())
    meta["config"]["model"]["encoder"]["k"] = 4  # the weights were trained with k = 2
    write_json(model_json, meta)
    with pytest.raises(ValueError, match="do not fit the model"):
        TrainedModel.load(tmp_path / "run")
    (tmp_path / "run" / "model.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a model checkpoint written by smearmil") as caught:
        TrainedModel.load(tmp_path / "run")
    assert "weights_only" not in str(caught.value)
    result = _invoke(["evaluate", str(tmp_path / "run"), str(sim_cohort)])
    assert result.exit_code == 2 and "model.pt" in result.output


def test_predict_skips_an_empty_image_with_a_warning(sim_cohort: Path, tmp_path: Path) -> None:
    args = [
        "train",
        str(sim_cohort),
        "--config",
        str(_tiny_config(tmp_path)),
        "--out",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tmp_path / "k"),
        "-q",
    ]
    assert _invoke(args).exit_code == 0
    patient = tmp_path / "new-patient"
    shutil.copytree(sim_cohort / "trainset" / "P000", patient)
    (patient / "empty.png").write_bytes(b"")
    result = _invoke(["predict", str(tmp_path / "run"), str(patient), "--json", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout[result.stdout.index("{") :])["patients"]
    assert found[0]["patient"] == "new-patient" and found[0]["skipped"] == [str(patient.resolve() / "empty.png")]


def test_a_truncated_cache_is_noticed_and_rebuilt(sim_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    cache = build_cache(cohort, Preprocessing(32), tmp_path / "k", progress=False)
    expected = np.array(cache.array)
    with open(cache.directory / IMAGES_FILE, "r+b") as f:
        f.truncate(cache.directory.joinpath(IMAGES_FILE).stat().st_size // 2)
    again = build_cache(cohort, Preprocessing(32), tmp_path / "k", progress=False)
    assert again.directory == cache.directory and np.array_equal(np.array(again.array), expected)


# --- 7. class checks -------------------------------------------------------------------------------------------


def test_a_cohort_of_one_class_stops_before_training(tmp_path: Path) -> None:
    rows = [(f"P{i}", "1", "M", "1/30/1978", "5.1") for i in range(1, 7)]
    root = write_lymph_cohort(tmp_path / "c", rows=rows)
    result = _invoke(
        ["cv", str(root), "--config", str(_tiny_config(tmp_path)), "--folds", "2", "--out", str(tmp_path / "cv"), "-q"],
    )
    assert result.exit_code == 2 and "at least two classes" in result.output
    assert not (tmp_path / "cv" / "summary.json").exists()


def test_a_split_whose_training_patients_lack_a_class_is_refused(tmp_path: Path) -> None:
    rows = [("P1", "0", "M", "1/30/1978", "5.1")] + [(f"P{i}", "1", "F", "3/22/1960", "9") for i in range(2, 8)]
    cohort = load_cohort(write_lymph_cohort(tmp_path / "c", rows=rows), progress=False)
    plan = make_splits(cohort, "kfold", folds=3, val=0.0, seed=0)
    with pytest.raises(DataError, match="no training patient of class 'reactive'"):
        plan.check_training_classes(cohort)


def test_a_metric_undefined_on_a_fold_is_missing_with_its_fold_count(sim_cohort: Path, tmp_path: Path) -> None:
    from smearmil.data.splits import Fold
    from smearmil.protocols.cv import FoldPredictions, summarise
    from smearmil.training.predictor import Prediction

    def fold(name: str, labels: list[int], p1: list[float]) -> FoldPredictions:
        preds = [Prediction(f"{name}{i}", np.array([1 - p, p])) for i, p in enumerate(p1)]
        return FoldPredictions(name, preds, np.array(labels))

    folds = [fold("a", [0, 1, 1], [0.2, 0.9, 0.7]), fold("b", [1, 1], [0.8, 0.6])]  # fold b: one class
    summary = summarise(folds, ["reactive", "tumoral"])
    assert summary["metrics"]["roc_auc"]["mean"] is None and summary["folds"][1]["roc_auc"] is None
    assert summary["partial_metrics"]["roc_auc"] == {"mean": 1.0, "std": 0.0, "n_folds": 1, "of": 2}
    from smearmil.protocols.compare import comparison_markdown

    assert "1.000 ± 0.000 (1/2 folds)" in comparison_markdown({"m": summary})
    assert Fold  # the split types stay importable here


# --- 8. outputs respect the umask ------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_keep_the_permissions_a_plain_write_would_have(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_json(tmp_path / "summary.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "summary.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask


# --- 9. bounded memory ------------------------------------------------------------------------------------------


def test_pixel_statistics_stream_and_match_the_direct_computation(tmp_path: Path) -> None:
    from smearmil.data.cache import ImageCache
    from smearmil.training.augment import pixel_statistics

    cache = ImageCache.synthetic(tmp_path / "c", {"a": 40, "b": 25}, 16, seed=3)
    cells = np.array(cache.array, dtype=np.float64) / 255
    stats = pixel_statistics(cache, ["a", "b"], chunk=7)  # chunks that do not divide the cells
    mean = cells.mean(0)
    assert np.allclose(stats["mean"].numpy().transpose(1, 2, 0), mean, atol=1e-6)
    assert np.isclose(float(stats["std"]), (cells - mean).std(), atol=1e-6)
    eigvals = np.linalg.eigvalsh(np.cov(cells.reshape(-1, 3), rowvar=False))
    assert np.allclose(stats["eigvals"].numpy(), np.clip(eigvals, 0, None), atol=1e-6)


def test_inference_in_chunks_equals_one_pass(tmp_path: Path) -> None:
    import torch

    from smearmil.models import Bags, ModelConfig, build_model, experts

    model = build_model(ModelConfig(encoder={"k": 2}, pooling="attention"), 2, 0, 32).eval()
    cells = torch.randint(0, 256, (70, 32, 32, 3), dtype=torch.uint8)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2).float() / 255

    with torch.no_grad():
        whole = model(Bags.of(torch.zeros(1, 0), [prepare(cells)])).logits
        old, experts.INFERENCE_PIXELS = experts.INFERENCE_PIXELS, 9 * 32 * 32  # chunks of 9 cells
        try:
            batch = Bags.of(torch.zeros(1, 0), [cells])
            batch.prepare = prepare
            chunked = model(batch).logits
        finally:
            experts.INFERENCE_PIXELS = old
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_bench_memory_prints_a_ratio(tmp_path: Path) -> None:
    done = _cli("bench", "memory", "--cells", "40", "--centring-cells", "200", "--size", "32")
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("ratio: ") and float(last.split()[1]) >= 1


# --- found in review ---------------------------------------------------------------------------------------------


def test_folds_sharing_a_name_or_named_like_run_files_are_refused(sim_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    plan = make_splits(cohort, "kfold", folds=2, seed=0).to_json()
    for names in (["same", "same"], ["summary.json", "fold1"], [MARKER, "fold1"], ["methods", "fold1"]):
        plan["folds"][0]["name"], plan["folds"][1]["name"] = names
        splits = tmp_path / "splits.json"
        splits.write_text(json.dumps(plan))
        with pytest.raises(DataError, match="share this name|cannot be used as a folder"):
            SplitPlan.load(splits)


def test_a_one_class_cohort_is_refused_with_a_splits_file_too(tmp_path: Path) -> None:
    two = write_lymph_cohort(tmp_path / "two")
    splits = tmp_path / "splits.json"
    make_splits(load_cohort(two, progress=False), "kfold", folds=2, val=0.0, seed=0).save(splits)
    rows = [
        (pid, "1", g, dob, count)
        for pid, _, g, dob, count in [
            ("P1", "0", "M", "1/30/1978", "5.1"),
            ("P2", "1", "F", "19-09-1944", "12.5"),
            ("P3", "0", "f", "3/22/1960", "4.2"),
            ("P4", "1", "M", "11/3/1933", "30.0"),
        ]
    ]
    one = write_lymph_cohort(tmp_path / "one", rows=rows)
    result = _invoke(
        [
            "cv",
            str(one),
            "--config",
            str(_tiny_config(tmp_path)),
            "--splits",
            str(splits),
            "--out",
            str(tmp_path / "cv"),
            "-q",
        ]
    )
    assert result.exit_code == 2 and "at least two classes" in result.output
    assert not (tmp_path / "cv" / "summary.json").exists()


def test_overwrite_never_deletes_a_foreign_folder_that_looks_simulated(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for name in ("simulation.json", "cell_truth.csv", "thesis.tex"):
        (foreign / name).write_text("mine")
    result = _invoke(
        ["simulate", str(foreign), "--patients", "4", "--cells-per-patient", "1:1", "--size", "16", "--overwrite", "-q"]
    )
    assert result.exit_code == 2 and (foreign / "thesis.tex").read_text() == "mine"


def test_file_system_refusals_are_named_errors_without_a_traceback(sim_cohort: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    done = _cli("cv", sim_cohort, "--config", _tiny_config(tmp_path), "--out", blocker / "sub", "-q")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "error:" in done.stderr
    target = tmp_path / "real-run"
    assert (
        _invoke(
            [
                "train",
                str(sim_cohort),
                "--config",
                str(_tiny_config(tmp_path)),
                "--out",
                str(target),
                "--cache-dir",
                str(tmp_path / "k"),
                "-q",
            ]
        ).exit_code
        == 0
    )
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    result = _invoke(
        [
            "train",
            str(sim_cohort),
            "--config",
            str(_tiny_config(tmp_path, "b.yaml", 2)),
            "--out",
            str(link),
            "--cache-dir",
            str(tmp_path / "k"),
            "--overwrite",
            "-q",
        ]
    )
    assert result.exit_code == 0, result.output  # our own run, reached through a link, is replaced
    assert json.loads((target / "model.json").read_text())["config"]["train"]["epochs"] == 2


def test_ssl_evaluate_skips_empty_and_oversized_cells(tmp_path: Path) -> None:
    root = tmp_path / "cells"
    rows = ["file,label"]
    for label in ("a", "b"):
        for k in range(6):
            write_image(root / label / f"{k}.png", seed=10 * ord(label) + k, size=24, fmt="PNG")
            rows.append(f"{label}/{k}.png,{label}")
    (root / "a" / "empty.png").write_bytes(b"")
    Image.new("L", (20000, 20000)).save(root / "b" / "huge.png")
    rows += ["a/empty.png,a", "b/huge.png,b"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    enc = tmp_path / "enc.yaml"
    enc.write_text("kind: ssl\nbase: cpu-ssl\nimage: {size: 24, crop: null}\nencoder: {k: 2}\n")
    done = run_in_process(
        "ssl",
        "evaluate",
        f"random:{enc}",
        root,
        "--out",
        tmp_path / "eval",
        "--json",
        "--test-size",
        "0.5",
        "--k",
        "3",
        "--cache-dir",
        tmp_path / "k",
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert json.loads(done.stdout)["n_train"] + json.loads(done.stdout)["n_test"] == 12


def test_outputs_of_a_command_keep_the_umask(sim_cohort: Path, tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        done = _cli("simulate", tmp_path / "c", "--patients", "4", "--cells-per-patient", "1:2", "--size", "16", "-q")
    finally:
        os.umask(old)
    assert done.returncode == 0
    written = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert written and {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o664}


def test_a_large_cached_bag_is_read_chunk_by_chunk_with_the_same_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from smearmil.models import experts

    monkeypatch.setattr(experts, "INFERENCE_PIXELS", 50 * 32 * 32)  # chunks of 50 cells at 32 px

    from smearmil.data.attributes import AttributeEncoder
    from smearmil.data.cache import ImageCache
    from smearmil.models import build_model
    from smearmil.training.augment import BatchTransform, pixel_statistics
    from smearmil.training.trained import TrainedModel

    cache = ImageCache.synthetic(tmp_path / "c", {"big": 300, "small": 20}, 32)
    config = load_config("cpu-attention", {"image": {"size": 32, "crop": None}})
    torch.manual_seed(0)
    encoder = AttributeEncoder([], [], "impute")
    encoder.medians = {"_": 0.0}
    trained = TrainedModel(
        build_model(config.model, 2, 0, 32),
        BatchTransform(pixel_statistics(cache, ["big"])),
        encoder,
        config,
        ["a", "b"],
    )
    read: list[int] = []
    original = ImageCache.read

    def counting(self: ImageCache, rows: object) -> np.ndarray:
        found = original(self, rows)  # type: ignore[arg-type]
        read.append(len(found))
        return found

    ImageCache.read = counting  # type: ignore[method-assign]
    try:
        lazy = trained.predict_arrays(
            ["big", "small"], _cached(cache), np.zeros((2, 0), np.float32), cells_per_batch=64
        )
    finally:
        ImageCache.read = original  # type: ignore[method-assign]
    assert max(read) < 300, "the large bag was read whole"
    whole = trained.predict_arrays(
        ["big", "small"], [cache.read_bag("big"), cache.read_bag("small")], np.zeros((2, 0), np.float32)
    )
    for a, b in zip(lazy, whole):
        assert np.allclose(a.proba, b.proba, atol=1e-6) and np.allclose(a.weights, b.weights, atol=1e-6)


def _cached(cache: object) -> object:
    from smearmil.training import trained

    return trained.CachedBags(cache, ["big", "small"])
