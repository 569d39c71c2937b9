"""`smearmil review`: the haematologist's page on a predicted cohort, its decisions trail and its export,
over HTTP (a live uvicorn server) and in Debian's chromium (Playwright)."""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import math
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smearmil.review.app import create_app
from smearmil.review.folder import ReviewFolder
from smearmil.review.serve import free_port
from smearmil.review.store import DecisionStore, ModelCall
from smearmil.utils.spreadsheet import read_rows

from .conftest import invoke, run_in_process

ONE_EPOCH = "base: cpu-cnn\nimage: {size: 32, crop: null}\ntrain: {epochs: 1, lr_steps: []}\n"
FEATURES = (  # an image expert on hand-crafted cell features: it never sees a pixel
    "kind: experts\ncells: {source: handcrafted, size: 32, n_jobs: 1}\ninner_folds: 2\n"
    "image_expert: [{name: mil/instance, params: {C: 0.1}}]\nattribute_expert: null\n"
)


def said(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def predicted(sim_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`predict` of the simulated cohort (12 patients, 4-8 cells) by a one-epoch CNN."""
    work = tmp_path_factory.mktemp("review")
    (work / "tiny.yaml").write_text(ONE_EPOCH)
    invoke(
        "train",
        sim_cohort,
        "--config",
        work / "tiny.yaml",
        "--all",
        "--out",
        work / "run",
        "--cache-dir",
        work / "k",
        "-q",
    )
    invoke("predict", work / "run", sim_cohort, "--out", work / "pred", "--cache-dir", work / "k", "-q")
    return work / "pred"


@pytest.fixture(scope="module")
def features_predicted(sim_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`predict` of the simulated cohort by a model of hand-crafted cell features."""
    work = tmp_path_factory.mktemp("review-features")
    (work / "features.yaml").write_text(FEATURES)
    invoke("train", sim_cohort, "--config", work / "features.yaml", "--all", "--out", work / "run", "-q")
    invoke("predict", work / "run", sim_cohort, "--out", work / "pred", "-q")
    return work / "pred"


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


class Live:
    """The review app served by uvicorn on a free local port, in a thread."""

    def __init__(self, folder: Path, db: Path, reviewer: str = "dr-a"):
        import uvicorn

        self.folder = ReviewFolder(folder)
        self.store = DecisionStore(db, self.folder.identity, self.folder.path, len(self.folder.patients))
        self.port = free_port("127.0.0.1")
        config = uvicorn.Config(
            create_app(self.folder, self.store, reviewer), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the review server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def raw(self, method: str, path: str, body: str = "") -> tuple[int, str]:
        """A request sent byte for byte (no client normalises ``../`` away)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        connection.close()
        return response.status, text

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live(predicted: Path, tmp_path: Path) -> Iterator[Live]:
    server = Live(predicted, tmp_path / "decisions.sqlite")
    yield server
    server.stop()


def csrf_of(page: str) -> str:
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_the_pages_and_images_answer_and_no_url_reaches_another_file(live: Live, predicted: Path) -> None:
    before = snapshot(predicted)
    status, worklist = live.raw("GET", "/")
    assert status == 200
    assert all(f">{p.id}</a>" in worklist for p in live.folder.patients)
    status, uncertain_first = live.raw("GET", "/?sort=uncertain&show=uncertain")
    assert status == 200 and uncertain_first.count("data-patient=") == sum(p.uncertain for p in live.folder.patients)
    status, page = live.raw("GET", "/patient/0")
    patient = live.folder.patients[0]
    assert status == 200 and f"patient {patient.id}" in page and page.count("<figure") == len(patient.cells)
    shares = [float(s.split('"', 1)[0]) for s in page.split('data-share="')[1:]]
    assert shares == sorted(shares, reverse=True) and len(shares) == len(patient.cells)  # most toward the call first
    status, image = live.raw("GET", "/cell/0/0")
    assert status == 200 and len(image) > 0
    for attempt in (
        "/cell/0/99",
        "/patient/99",
        "/patient/-1",
        "/cell/../../etc/passwd",
        "/cell/0/../../../../etc/passwd",
        "/cell/%2e%2e/%2e%2e%2fetc%2fpasswd",
        "/cell/0/..%2F..%2Fetc%2Fpasswd",
        "/cell//etc/passwd",
        f"/cell/{patient.cells[0].file}",
        "/static/../pyproject.toml",
        "/templates/base.html",
    ):
        status, _ = live.raw("GET", attempt)
        assert status == 404, attempt
    # a form without the session's token changes nothing
    status, _ = live.raw("POST", "/patient/0/decision", "diagnosis=tumoral&reviewer=x&csrf=forged")
    assert status == 403 and live.store.count() == 0
    status, _ = live.raw("POST", "/patient/0/flag", "cell=0&flag=artefact&reviewer=x")  # no token at all
    assert status == 403 and live.store.count() == 0
    assert snapshot(predicted) == before  # PREDICT_DIR stays read-only


def test_decisions_from_four_threads_are_all_stored_and_never_overwritten(live: Live) -> None:
    import httpx

    token = csrf_of(live.raw("GET", "/patient/0")[1])
    classes = live.folder.class_names
    per_thread, failures = 10, []

    def decide(k: int) -> None:
        with httpx.Client(base_url=live.url) as client:
            for i in range(per_thread):
                form = {"csrf": token, "reviewer": f"dr-{k}", "diagnosis": classes[i % 2], "comment": f"{k}-{i}"}
                answer = client.post(f"/patient/{i % 3}/decision", data=form)
                if answer.status_code != 303:
                    failures.append(answer.status_code)

    threads = [threading.Thread(target=decide, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and live.store.count() == 4 * per_thread
    comments = {r["comment"] for p in live.folder.patients[:3] for r in live.store.history(p.id)}
    assert comments == {f"{k}-{i}" for k in range(4) for i in range(per_thread)}
    latest = live.store.latest_decisions()
    assert len(latest) == 4 * 3  # one per reviewer and patient, the last each made
    assert {d["comment"] for d in latest if d["reviewer"] == "dr-0"} == {"0-7", "0-8", "0-9"}
    with sqlite3.connect(live.store.path) as db:  # an audit trail: rows are added, never changed
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE actions SET diagnosis = 'x'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM actions")


def test_export_round_trips_and_another_cohort_is_refused(predicted: Path, tmp_path: Path) -> None:
    folder = ReviewFolder(predicted)
    db = tmp_path / "d.sqlite"
    store = DecisionStore(db, folder.identity, folder.path, len(folder.patients))
    first, second = folder.patients[:2]
    other = next(c for c in folder.class_names if c != first.call)
    store.decide("dr-a", first.id, first.call, "low", "first look", ModelCall(first.call, first.probability, True))
    store.decide("dr-a", first.id, other, "high", "=HYPERLINK(1)", ModelCall(first.call, first.probability, True))
    store.decide("dr-b", second.id, second.call, "medium", "", ModelCall(second.call, second.probability, False))
    store.flag("dr-a", first.id, str(first.cells[0].file), "artefact", ModelCall(first.call, 0.5, True))
    store.flag("dr-a", first.id, str(first.cells[1].file), "smudge", ModelCall(first.call, 0.5, True))
    store.flag("dr-a", first.id, str(first.cells[1].file), "none", ModelCall(first.call, 0.5, True))  # taken back
    done = run_in_process("review", predicted, "--db", db, "--export", tmp_path / "out" / "decisions.csv")
    assert done.returncode == 0, done.stderr
    assert said(done.stdout) == f"2 decisions, 1 flagged cells -> {tmp_path / 'out' / 'decisions.csv'}"
    text = (tmp_path / "out" / "decisions.csv").read_text()
    assert "'=HYPERLINK(1)" in text  # spreadsheet-safe
    with (tmp_path / "out" / "decisions.csv").open(newline="") as handle:
        rows = list(read_rows(handle))
    decisions = {(r["patient"], r["reviewer"]): r for r in rows if r["kind"] == "decision"}
    assert decisions[(first.id, "dr-a")]["diagnosis"] == other
    assert decisions[(first.id, "dr-a")]["comment"] == "=HYPERLINK(1)"
    assert decisions[(first.id, "dr-a")]["agrees_with_model"] == "no"
    assert decisions[(second.id, "dr-b")]["agrees_with_model"] == "yes"
    assert [(r["cell"], r["flag"]) for r in rows if r["kind"] == "flag"] == [(str(first.cells[0].file), "artefact")]
    # a second review on the same database is fine; a database of another cohort is refused, naming both
    assert DecisionStore(db, folder.identity, folder.path, len(folder.patients)).count() == 6
    elsewhere = tmp_path / "fewer"
    shutil.copytree(predicted, elsewhere)
    lines = (elsewhere / "predictions.csv").read_text().splitlines()
    (elsewhere / "predictions.csv").write_text("\n".join(lines[:-1]) + "\n")
    refused = run_in_process("review", elsewhere, "--db", db, "--export", tmp_path / "x.csv")
    assert refused.returncode == 2
    assert str(predicted) in said(refused.stderr) and str(elsewhere) in said(refused.stderr)
    inside = run_in_process("review", predicted, "--db", predicted / "d.sqlite", "--export", tmp_path / "y.csv")
    assert inside.returncode == 2 and "which review only reads" in said(inside.stderr)
    assert not (predicted / "d.sqlite").exists()
    into = run_in_process("review", predicted, "--db", db, "--export", predicted / "decisions.csv")
    assert into.returncode == 2 and "which review only reads" in said(into.stderr)
    assert not (predicted / "decisions.csv").exists()


def test_names_are_escaped(predicted: Path, tmp_path: Path) -> None:
    hostile = tmp_path / "hostile"
    shutil.copytree(predicted, hostile)
    first = ReviewFolder(predicted).patients[0].id
    for file in ("predictions.csv", "cells.csv"):
        text = (hostile / file).read_text()
        (hostile / file).write_text(text.replace(f"\n{first},", "\n<script>alert(1)</script>,"))
    server = Live(hostile, tmp_path / "h.sqlite", reviewer="<b>me</b>")
    try:
        index = next(p.index for p in server.folder.patients if p.id.startswith("<script>"))
        for path in ("/", f"/patient/{index}"):
            status, page = server.raw("GET", path)
            assert status == 200 and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
            assert "<script>alert(1)" not in page and "<b>me</b>" not in page
    finally:
        server.stop()


def with_columns(predicted: Path, copy: Path, columns: Callable[[dict[str, str]], dict[str, str]]) -> Path:
    """A copy of the predict folder whose predictions.csv rows get ``columns(row)`` added."""
    shutil.copytree(predicted, copy)
    with (predicted / "predictions.csv").open(newline="") as handle:
        rows = [{**r, **columns(r)} for r in csv.DictReader(handle)]
    with (copy / "predictions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return copy


def test_the_worklist_shows_attributes_and_a_stacks_evidence_splits_images_from_attributes(
    predicted: Path, tmp_path: Path
) -> None:
    negative, positive = ReviewFolder(predicted).class_names

    def stack(r: dict[str, str]) -> dict[str, str]:  # an experts run's columns: each expert's P, each stack logit
        p = float(r[f"prob_{positive}"])
        logit = math.log(p / (1 - p))
        shares = {"stack_image": f"{logit - 0.5:.6f}", "stack_attributes": "0.4", "stack_attribute:0": "0.3"}
        return {"p_image": "0.25", "p_attributes": "0.75", **shares}  # the bias: -0.2

    stacked = with_columns(predicted, tmp_path / "stacked", stack)
    folder = ReviewFolder(stacked)
    first = folder.patients[0]
    p = first.proba[positive]
    logit = math.log(p / (1 - p))
    images = f"{logit - 0.5:+.2f}"
    assert folder.evidence(first) == (
        f"images push toward {positive if logit - 0.5 >= 0 else negative} ({images}), attributes toward "
        f"{positive} (+0.70), bias toward {negative} (-0.20): logit {logit:+.2f} toward {positive}"
    )  # not the image expert's own cells.csv sum: its share of the fused log-odds
    server = Live(stacked, tmp_path / "s.sqlite")
    try:
        worklist = server.raw("GET", "/")[1]
        page = server.raw("GET", f"/patient/{first.index}")[1]
    finally:
        server.stop()
    assert f"image expert P({positive})" in worklist and "stack logit: attributes" in worklist
    names = folder.attribute_names
    assert names and all(f'<th class="num attribute">{a}</th>' in worklist for a in names)
    shown = {k: v for k, v in folder.attribute_values(first).items() if not math.isnan(v)}
    row = worklist.split(f'data-patient="{first.id}"', 1)[1].split("</tr>", 1)[0]
    assert shown and all(f"{v:.4g}" in row for v in shown.values())
    assert "images push" in page and "attributes toward" in page and ">0.250<" in page


def test_a_mixtures_evidence_gives_its_gate_and_what_each_expert_says(predicted: Path, tmp_path: Path) -> None:
    gate = {"p_image": "0.9", "p_attributes": "0.2", "gate_image_expert": "0.3"}  # each expert's P, the gate
    gated = with_columns(predicted, tmp_path / "gated", lambda _: gate)
    folder = ReviewFolder(gated)
    positive = folder.class_names[1]
    first = folder.patients[0]
    assert folder.evidence(first) == (
        f"the gate trusts the images 0.30 (they say P({positive}) = 0.90) and the attributes 0.70 "
        f"(P({positive}) = 0.20): P({positive}) = {first.proba[positive]:.2f}"
    )


def png_of(url: str) -> tuple[int, str, bytes]:
    import httpx

    answer = httpx.get(url, timeout=120)
    return answer.status_code, answer.headers.get("content-type", ""), answer.content


def test_a_cnns_saliency_overlays_each_cell_at_its_own_size(live: Live) -> None:
    import numpy as np
    from PIL import Image

    patient = live.folder.patients[0]
    status, page = live.raw("GET", "/patient/0")
    assert status == 200 and 'id="saliency"' in page and "no-saliency" not in page
    assert page.count('/saliency"') == len(patient.cells)  # each cell names its overlay, none fetched yet
    for cell in (0, len(patient.cells) - 1):
        status, kind, body = png_of(f"{live.url}/cell/0/{cell}/saliency")
        assert status == 200 and kind == "image/png"
        with Image.open(io.BytesIO(body)) as overlay, Image.open(patient.cells[cell].file) as image:
            assert overlay.size == image.size
            assert np.any(np.asarray(overlay.convert("RGB")) != np.asarray(image.convert("RGB")))
    for attempt in ("/cell/0/99/saliency", "/cell/99/0/saliency", "/cell/0/-1/saliency", "/cell/0/0/saliency/../x"):
        assert live.raw("GET", attempt)[0] == 404, attempt


def test_a_features_model_offers_no_saliency_and_says_why(features_predicted: Path, tmp_path: Path) -> None:
    server = Live(features_predicted, tmp_path / "f.sqlite")
    try:
        status, page = server.raw("GET", "/patient/0")
        assert status == 200 and 'id="saliency"' not in page and "/saliency" not in page
        assert "this model reads cell features, not pixels: no saliency" in said(page)
        assert server.raw("GET", "/cell/0/0")[0] == 200
        assert server.raw("GET", "/cell/0/0/saliency")[0] == 404
    finally:
        server.stop()


def test_a_cv_folder_is_reviewed_by_its_test_fold_calls(sim_cohort: Path, tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(ONE_EPOCH)
    run = tmp_path / "cv"
    invoke(
        "cv",
        sim_cohort,
        "--config",
        tmp_path / "tiny.yaml",
        "--folds",
        2,
        "--out",
        run,
        "--cache-dir",
        tmp_path / "k",
        "-q",
    )
    with (run / "predictions.csv").open(newline="") as handle:
        rows = list(read_rows(handle))
    server = Live(run, tmp_path / "cv.sqlite")
    try:
        status, worklist = server.raw("GET", "/?sort=patient")
        assert status == 200
        shown = {
            line.split('data-patient="', 1)[1].split('"', 1)[0]: said(line)
            for line in worklist.split("<tr data-href=")[1:]
        }
        assert sorted(shown) == sorted(r["patient"] for r in rows)  # every patient once
        for r in rows:  # each with the call and P(positive) of the fold it was a test patient of
            assert (
                f'<td>{r["prediction"]}</td><td class="num">{float(r["prob_tumoral"]):.3f}</td>' in shown[r["patient"]]
            )
        patient = server.folder.patients[0]
        cells = server.folder.data[patient.id].images  # type: ignore[index]
        status, page = server.raw("GET", "/patient/0")
        assert status == 200 and f"patient {patient.id}" in page and page.count("<figure") == len(cells) > 0
        assert server.raw("GET", "/cell/0/0")[0] == 200
        status, kind, _ = png_of(f"{server.url}/cell/0/0/saliency")  # explained by its test-fold model
        assert status == 200 and kind == "image/png"
    finally:
        server.stop()
    # folds with their own thresholds: a patient is uncertain, and shown, against its test fold's
    summary = json.loads((run / "summary.json").read_text())
    for fold, cut in zip(summary["folds"], (0.2, 0.8)):
        fold["threshold"] = cut
    (run / "summary.json").write_text(json.dumps(summary))
    cuts = {f["fold"]: f["threshold"] for f in summary["folds"]}
    assert all(0.4 < float(r["prob_tumoral"]) < 0.6 for r in rows)  # a one-epoch model: uncertain at 0.5
    server = Live(run, tmp_path / "cuts.sqlite")
    try:
        for r in rows:
            p = server.folder[r["patient"]]
            assert p.threshold == cuts[r["fold"]] and not p.uncertain
        first = next(p for p in server.folder.patients if p.threshold == 0.2)
        assert "(threshold 0.20)" in said(server.raw("GET", f"/patient/{first.index}")[1])
    finally:
        server.stop()


# the page in a real browser


def chromium_path() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return exe


def test_a_reviewer_records_a_disagreement_and_a_flag_in_chromium(live: Live, predicted: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    folder = live.folder
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(live.url + "/?sort=patient")
        assert page.locator("#worklist tbody tr").count() == len(folder.patients)
        page.click("#sort-uncertain")
        shown = page.locator("#worklist tbody tr").evaluate_all("rows => rows.map(r => r.dataset.patient)")
        flagged = [folder[p].uncertain for p in shown]
        assert flagged == sorted(flagged, reverse=True)  # uncertain calls first
        page.keyboard.press("j")
        page.keyboard.press("Enter")  # the keyboard opens the first patient of the list
        page.wait_for_selector("#cells figure img")
        patient = folder[shown[0]]
        assert said(page.inner_text("#patient")) == f"patient {patient.id}"
        page.wait_for_function("[...document.images].every(i => i.complete)")
        widths = page.locator("#cells img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == len(patient.cells) and all(w > 0 for w in widths)
        shares = page.locator("#cells figure").evaluate_all("fs => fs.map(f => parseFloat(f.dataset.share))")
        assert shares == sorted(shares, reverse=True)
        page.keyboard.press("s")  # saliency on: every cell swaps for its overlay, computed once for the patient
        page.wait_for_function(
            "[...document.querySelectorAll('#cells img')].every(i => i.complete && /saliency$/.test(i.src))"
        )
        overlays = page.locator("#cells img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
        assert overlays == widths and page.is_checked("#saliency")
        page.click("#saliency")  # and off again
        assert page.locator("#cells img").first.get_attribute("src") == f"/cell/{patient.index}/0"
        other = next(c for c in folder.class_names if c != patient.call)
        page.select_option("#diagnosis", other)
        page.select_option("#confidence", "high")
        page.fill("#comment", "blasts look reactive to me")
        with page.expect_navigation():  # each form posts, then the page comes back: wait for it
            page.click("#record")
        page.locator("#cell-1 select").select_option("artefact")
        with page.expect_navigation():
            page.locator("#cell-1 button").click()
        page.reload()
        assert "blasts look reactive to me" in page.inner_text("#decisions")
        assert other in page.inner_text("#decisions") and "artefact (dr-a)" in page.inner_text("#cell-1")
        page.goto(live.url + "/?show=disagreements")
        assert page.locator("#worklist tbody tr[data-patient]").count() == 1
        assert "dr-a" in page.inner_text("#agreement")
        for width in (390, 1280):  # a phone and a desktop: wide tables scroll inside, the page never does
            page.set_viewport_size({"width": width, "height": 800})
            for path in ("/", f"/patient/{patient.index}"):
                page.goto(live.url + path)
                assert page.evaluate("document.documentElement.scrollWidth") <= width, (width, path)
        browser.close()
    done = run_in_process("review", predicted, "--db", live.store.path, "--export", tmp_path / "d.csv")
    assert done.returncode == 0, done.stderr
    with (tmp_path / "d.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["patient"], r["diagnosis"], r["comment"]) for r in rows if r["kind"] == "decision"] == [
        (patient.id, other, "blasts look reactive to me")
    ]
    assert [(r["cell"], r["flag"]) for r in rows if r["kind"] == "flag"] == [(str(patient.cells[1].file), "artefact")]
