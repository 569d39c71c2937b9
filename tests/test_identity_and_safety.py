"""Right cells for the right patient, and no run harms another (issue 25): each adversarial finding built in
a temp folder, with the outcome it must have now."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from smearmil.data.problems import DataError
from smearmil.data.validation import load_cohort, load_patients

from .conftest import invoke, run_in_process, write_image, write_lymph_cohort

CLI = [sys.executable, "-m", "smearmil"]
NB = "kind: baseline\nbaseline: clinical/gnb\n"


def said(text: str) -> str:
    """Terminal output with its line wrapping undone."""
    return " ".join(text.split())


def _problems(error: pytest.ExceptionInfo[DataError]) -> str:
    return " ".join(f"{p.kind} {p.where} {p.message}" for p in error.value.problems)


# 1. a patient id in two split folders, and in two tables
def test_a_patient_in_two_split_folders_is_an_error_naming_both(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path / "c")
    test = root / "testset"
    for j in range(2):
        write_image(test / "P1" / f"x{j}.jpg", seed=900 + j)
    (test / "testset_data.csv").write_text("ID,LABEL,GENDER,DOB,LYMPH_COUNT\nP1,-1,M,1/1/1950,4.0\n")
    with pytest.raises(DataError) as found:
        load_cohort(root, progress=False)
    text = _problems(found)
    assert "duplicate_patient" in text and str(root / "trainset" / "P1") in text and str(test / "P1") in text
    assert "testset_data.csv" in text and "trainset_true.csv" in text  # the two rows, by table


# 2. loose folders with the same name
def test_two_loose_folders_of_one_name_are_refused(lymph_cohort: Path, tmp_path: Path) -> None:
    for side in ("a", "b"):
        for j in range(2):
            write_image(tmp_path / "loose" / side / "P001" / f"{j}.jpg", seed=ord(side) * 10 + j)
    with pytest.raises(DataError) as found:
        load_patients([tmp_path / "loose" / "a" / "P001", tmp_path / "loose" / "b" / "P001"], progress=False)
    assert "same name" in _problems(found) and str(tmp_path / "loose" / "a" / "P001") in _problems(found)
    with pytest.raises(DataError, match="duplicate_patient|given twice") as again:
        load_patients([tmp_path / "loose" / "a" / "P001", tmp_path / "loose" / "a" / "P001"], progress=False)
    assert "given twice" in _problems(again)


# 3. report into a folder smearmil never wrote
def test_report_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "report.html").write_text("my own notes")
    (foreign / "predictions.csv").write_text("patient,prob_a,prob_b,prediction\nP1,0.2,0.8,b\n")
    done = run_in_process("report", foreign)
    assert done.returncode == 2 and "was not written by smearmil" in said(done.stderr)
    assert (foreign / "report.html").read_text() == "my own notes" and not (foreign / "report.md").exists()


# 4. a cohort whose classes.txt disagrees with the model's classes
def test_predict_refuses_a_cohort_whose_classes_differ_from_the_models(lymph_cohort: Path, tmp_path: Path) -> None:
    (tmp_path / "nb.yaml").write_text(NB)
    invoke("train", lymph_cohort, "--config", tmp_path / "nb.yaml", "--all", "--out", tmp_path / "run", "-q")
    (lymph_cohort / "classes.txt").write_text("tumoral\nreactive\n")  # the same names, swapped
    done = run_in_process("predict", tmp_path / "run", lymph_cohort, "--out", tmp_path / "p")
    assert done.returncode == 2 and not (tmp_path / "p" / "predictions.csv").exists()
    from smearmil.data.options import DataOptions

    with pytest.raises(DataError) as found:  # what the command printed, in full
        load_patients([lymph_cohort], DataOptions().for_new_patients(["reactive", "tumoral"]), progress=False)
    text = _problems(found)
    assert "class_mismatch" in text and "['tumoral', 'reactive']" in text and "['reactive', 'tumoral']" in text


# 5. duplicated header names
@pytest.mark.parametrize("header", ["ID,LABEL,GENDER,DOB,LYMPH_COUNT,LABEL", "label,ID,LABEL,GENDER,DOB,LYMPH_COUNT"])
def test_a_header_naming_one_column_twice_is_an_error(tmp_path: Path, header: str) -> None:
    root = write_lymph_cohort(tmp_path / "c")
    rows = (root / "trainset" / "trainset_true.csv").read_text().splitlines()[1:]
    extra = ",1" if header.endswith("LABEL") else ""
    body = [(("0," + r) if header.startswith("label") else r + extra) for r in rows]
    (root / "trainset" / "trainset_true.csv").write_text("\n".join([header, *body]) + "\n")
    with pytest.raises(DataError) as found:
        load_cohort(root, progress=False)
    assert "duplicate_column" in _problems(found) and "LABEL" in _problems(found)


# 6. the same cell in two patients, its file re-saved with a comment (identical pixels)
def test_a_copy_with_other_bytes_but_the_same_pixels_is_found(lymph_cohort: Path) -> None:
    source = lymph_cohort / "trainset" / "P1" / "P1_0.jpg"
    data = source.read_bytes()
    comment = b"\xff\xfe" + (2 + 11).to_bytes(2, "big") + b"hello world"  # a JPEG COM segment after SOI
    (lymph_cohort / "trainset" / "P2" / "copy.jpg").write_bytes(data[:2] + comment + data[2:])
    assert (lymph_cohort / "trainset" / "P2" / "copy.jpg").read_bytes() != data
    with pytest.raises(DataError) as found:
        load_cohort(lymph_cohort, progress=False)
    assert "duplicate_across_patients" in _problems(found) and "P1_0.jpg" in _problems(found)


# 7. cache clear and folders it did not write
def test_cache_clear_keeps_folders_it_did_not_build(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    mine = cache / "holiday.building-photos"  # a user's folder that merely looks like a build
    mine.mkdir(parents=True)
    (mine / "a.txt").write_text("keep me")
    dead = cache / f"c-32px-{'0' * 24}.building-999999-abcdef12"  # a dead build smearmil made
    dead.mkdir()
    invoke("cache", "clear", "--cache-dir", cache)
    assert (mine / "a.txt").read_text() == "keep me" and not dead.exists()


# 8. cache clear while another process reads the cache; 10. two runs into one --out
def _start(args: list[object], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def _wait_for(condition: object, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and process.poll() is None:  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("the first process never got there")
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_writer_and_a_cache_clear_leave_a_running_cv_alone(sim_cohort: Path, tmp_path: Path) -> None:
    config = tmp_path / "cnn.yaml"
    config.write_text(
        "base: cpu-cnn\nimage: {size: 32, crop: null}\nmodel: {encoder: {k: 2}}\ntrain: {epochs: 15, lr_steps: []}\n"
    )
    out, cache = tmp_path / "cv", tmp_path / "cache"
    args: list[object] = ["cv", sim_cohort, "--config", config, "--folds", "2", "--out", out, "--cache-dir", cache]
    first = _start([*args, "-q"], tmp_path / "first.log")
    try:
        _wait_for(lambda: any(out.glob("fold0/*/logs/metrics.csv")), first)  # training: the cache is being read
        assert first.poll() is None
        second = run_in_process(*args, "--overwrite", "-q")
        assert second.returncode == 2 and f"is in use by process {first.pid}" in said(second.stderr)
        cleared = run_in_process("cache", "clear", "--cache-dir", cache)
        assert cleared.returncode == 0 and "kept" in said(cleared.stdout) and "in use by" in said(cleared.stdout)
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-2000:]
    finally:
        first.kill()
    assert (out / "summary.json").is_file() and any(cache.iterdir())
    assert invoke("cache", "clear", "--cache-dir", cache).count("removed") == 1  # free once the run ended


# 9. bounded reads
def test_huge_files_and_tiffs_are_refused_before_decoding(lymph_cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tifffile

    from smearmil.data import images

    folder = lymph_cohort / "trainset" / "P1"
    tifffile.imwrite(folder / "slide.tif", np.zeros((9000, 8000), np.uint8), compression="zlib")
    assert (folder / "slide.tif").stat().st_size < 1_000_000  # tiny on disk, 72 Mpx decoded
    limit = (folder / "slide.tif").stat().st_size + 1
    monkeypatch.setattr(images, "MAX_FILE_BYTES", limit)  # as a 3 GB file would be for the real limit
    (folder / "big.jpg").write_bytes(b"\xff\xd8" + b"\0" * limit)
    cohort = load_cohort(lymph_cohort, progress=False)
    skipped = {Path(p.where).name: p.message for p in cohort.problems if p.kind == "unreadable_image"}
    assert "far more than a cell image" in skipped["slide.tif"] and "Mpx" in skipped["slide.tif"]
    assert "MB" in skipped["big.jpg"] and cohort["P1"].n_cells == 3


# 11. the attributes table of loose folders
def test_the_attributes_of_loose_folders_are_checked_like_a_cohorts(lymph_cohort: Path, tmp_path: Path) -> None:
    folder = lymph_cohort / "trainset" / "P1"
    (tmp_path / "a.csv").write_text("ID,DOB,LYMPH_COUNT\nP1,99/99/1957,5000\n")
    with pytest.raises(DataError) as found:
        load_patients([folder], attributes_csv=tmp_path / "a.csv", progress=False)
    assert {"bad_date", "implausible_attribute"} <= {p.kind for p in found.value.problems}
    (tmp_path / "b.csv").write_text("ID,DOB,LYMPH_COUNT\nP1,NA,5.0\n")
    cohort = load_patients([folder], attributes_csv=tmp_path / "b.csv", progress=False)
    assert any(p.kind == "missing_value" and "imputed" in p.message for p in cohort.problems)  # the policy's word
    assert np.isnan(cohort["P1"].attributes["age"]) and cohort["P1"].attributes["lymph_count"] == 5.0


# 12. a patient folder that cannot be read
def test_an_unreadable_patient_folder_is_an_error_naming_it(
    lymph_cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = lymph_cohort / "trainset" / "P2"
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:  # what chmod 000 does for any user but root (tests run as root)
        if Path(os.fsdecode(path)).resolve() == locked.resolve():  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError) as found:
        load_cohort(lymph_cohort, progress=False)
    assert "unreadable_folder" in _problems(found) and str(locked) in _problems(found)


# 13. cells changed in place with their modification time kept
def test_a_cell_changed_in_place_is_never_served_from_a_stale_cache(lymph_cohort: Path, tmp_path: Path) -> None:
    from smearmil.data.cache import build_cache

    cell = lymph_cohort / "trainset" / "P1" / "P1_0.jpg"
    before = build_cache(load_cohort(lymph_cohort, progress=False), cache_dir=tmp_path / "k", progress=False)
    stat = cell.stat()
    red = io.BytesIO()
    Image.new("RGB", (24, 24), (250, 10, 10)).save(red, "JPEG", quality=90)
    assert len(red.getvalue()) <= stat.st_size
    cell.write_bytes(red.getvalue().ljust(stat.st_size, b"\0"))  # bytes after the image's end are ignored
    os.utime(cell, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same size and time: only the content differs
    assert cell.stat().st_size == stat.st_size
    after = build_cache(load_cohort(lymph_cohort, progress=False), cache_dir=tmp_path / "k", progress=False)
    assert after.directory != before.directory
    assert after.read_bag("P1")[0].mean(axis=(0, 1))[0] > 200  # the new red cell, not the old one


# 14. tracebacks: a full disk at a checkpoint, bad --set YAML, a table that is a folder, a damaged encoder.json
def test_a_full_disk_during_a_save_is_a_named_error_leaving_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from smearmil.utils.checkpoints import save_tensors

    def full(obj: object, path: object) -> None:
        Path(str(path)).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: No space left")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="could not be written.*No space left.*Free disk space"):
        save_tensors({"w": torch.zeros(2)}, tmp_path / "run" / "model.pt", "model")
    assert list((tmp_path / "run").iterdir()) == []


def test_bad_set_yaml_a_folder_as_table_and_a_damaged_encoder_are_named_errors(
    lymph_cohort: Path, tmp_path: Path
) -> None:
    done = run_in_process("cv", lymph_cohort, "--config", "cpu-cnn", "--set", "train.epochs=[1", "--out", tmp_path)
    assert done.returncode == 2 and "is not a YAML value" in said(done.stderr) and "Traceback" not in done.stderr
    done = run_in_process("data", "inspect", lymph_cohort, "--csv", tmp_path)  # a table that is a folder
    shown = said(done.stdout + done.stderr)
    assert done.returncode in (1, 2) and "cannot read the table" in shown and "Traceback" not in shown
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "encoder.json").write_text('{"input_size": 32}')
    (tmp_path / "enc" / "encoder.pt").write_bytes(b"")
    done = run_in_process("features", "extract", lymph_cohort, "--encoder", tmp_path / "enc", "--out", tmp_path / "f")
    assert done.returncode == 2 and "encoder.json is damaged" in said(done.stderr)


# 15. a file name that is not UTF-8
def test_a_file_name_that_is_not_utf8_is_named_by_inspect(lymph_cohort: Path) -> None:
    folder = os.fsencode(lymph_cohort / "trainset" / "P1")
    name = os.path.join(folder, b"cell-\xff.jpg")
    try:
        with open(name, "wb") as handle:
            handle.write((lymph_cohort / "trainset" / "P1" / "P1_0.jpg").read_bytes()[:-1] + b"\xd9")
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    text = invoke("data", "inspect", lymph_cohort)
    assert "not valid UTF-8" in said(text) and "\\xff" in text


# 16. compare methods whose names map to one folder
def test_compare_methods_whose_names_map_to_one_folder_get_one_each(lymph_cohort: Path, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "kind: compare\nmethods:\n  - {name: nb/x, baseline: clinical/gnb}\n  - {name: nb-x, baseline: clinical/tree}\n"
        "  - {name: NB-X, baseline: clinical/logreg}\n"
    )
    invoke("compare", lymph_cohort, "--config", tmp_path / "c.yaml", "--folds", "2", "--out", tmp_path / "out", "-q")
    folders = sorted(p.name for p in (tmp_path / "out" / "methods").iterdir())
    assert folders == ["NB-X-3", "nb-x", "nb-x-2"]  # distinct even on a case-insensitive disk
    configs = [(tmp_path / "out" / "methods" / f / "config.yaml").read_text() for f in folders]
    assert len(set(configs)) == 3  # each its own method, none overwritten


# 17. users' text in exported files
def test_exported_csvs_neutralise_formulas_and_report_md_escapes_html(tmp_path: Path) -> None:
    rows = [("=HYPERLINK(1)", "0", "M", "1/30/1978", "5.1"), ("P2", "1", "F", "19-09-1944", "12.5")]
    rows += [("@P3", "0", "F", "3/22/1960", "4.2"), ("P4", "1", "M", "11/3/1933", "30.0")]
    root = write_lymph_cohort(tmp_path / "c", rows=rows)
    (root / "classes.txt").write_text("<script>alert(1)</script>\n+tumoral\n")
    (tmp_path / "nb.yaml").write_text(NB)
    invoke("cv", root, "--config", tmp_path / "nb.yaml", "--folds", "2", "--out", tmp_path / "cv", "-q")
    table = list(csv.reader(io.StringIO((tmp_path / "cv" / "predictions.csv").read_text())))
    cells = [c for row in table for c in row]
    assert "'=HYPERLINK(1)" in cells and "'@P3" in cells and "'+tumoral" in cells
    assert not any(c[:1] in "=+@" for c in cells)  # no cell a spreadsheet would evaluate
    invoke("report", tmp_path / "cv", "-q")
    md = (tmp_path / "cv" / "report.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    html = (tmp_path / "cv" / "report.html").read_text()
    assert "=HYPERLINK(1)" in html  # the report reads the ids back as they are


# the property: clashing identities end in unique patients, or in an error naming both places
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    train=st.lists(st.sampled_from(["A", "B", "C", "D"]), min_size=1, max_size=4, unique=True),
    test=st.lists(st.sampled_from(["A", "B", "C", "E"]), max_size=3, unique=True),
    repeat=st.booleans(),
)
def test_clashing_identities_give_unique_patients_or_an_error_naming_both(
    tmp_path_factory: pytest.TempPathFactory, train: list[str], test: list[str], repeat: bool
) -> None:
    root = tmp_path_factory.mktemp("clash")
    seed = 0
    for split, ids, table, label in (
        ("trainset", train, "trainset_true.csv", "0"),
        ("testset", test, "testset_data.csv", "-1"),
    ):
        lines = ["ID,LABEL,GENDER,DOB,LYMPH_COUNT"] + [f"{i},{label},M,1/1/1950,4.0" for i in ids]
        if repeat and ids and split == "trainset":
            lines.append(f"{ids[0]},{label},M,1/1/1950,4.0")  # a row twice in one table
        (root / split).mkdir()
        (root / split / table).write_text("\n".join(lines) + "\n")
        for i in ids:
            seed += 1
            write_image(root / split / i / f"{i}.jpg", seed=seed)
    try:
        cohort = load_cohort(root, progress=False)
    except DataError as error:
        clashes = [p for p in error.problems if p.kind == "duplicate_patient"]
        assert clashes, [p.message for p in error.problems]
        for p in clashes:  # both places named: two folders, two tables, or the line of the first row
            assert " and " in p.message or "already" in p.message
        return
    assert len(set(cohort.ids)) == len(cohort.ids) and not (set(train) & set(test)) and not repeat
    for pid in cohort.ids:
        folder = cohort[pid].images[0].parent
        assert folder.name == pid and len(cohort[pid].images) == 1  # its own cells, nobody else's


def test_spreadsheet_cells_round_trip_and_numbers_stay_numbers() -> None:
    from smearmil.utils.spreadsheet import read_cell, safe_cell

    for text in ("=cmd", "+x", "-rm", "@SUM(1)", "'=x", "'plain", "plain", "\tx"):
        assert read_cell(safe_cell(text)) == text and safe_cell(text)[:1] not in "=+-@\t"
    assert safe_cell("-0.25") == "-0.25" and safe_cell("+1e3") == "+1e3" and safe_cell(-0.5) == -0.5


def test_cells_that_differ_slightly_are_not_taken_for_copies(lymph_cohort: Path) -> None:
    image = np.asarray(Image.open(lymph_cohort / "trainset" / "P1" / "P1_0.jpg").convert("RGB")).copy()
    image[8:12, 8:12] = np.clip(image[8:12, 8:12].astype(int) + 41, 0, 255)
    Image.fromarray(image).save(lymph_cohort / "trainset" / "P2" / "near.png")
    cohort = load_cohort(lymph_cohort, progress=False)  # no duplicate_across_patients error
    assert cohort["P2"].n_cells == 4
