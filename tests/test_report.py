"""Repeatability and the self-contained report of a CV run, rendered in headless Chromium."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smearmil.cli import app
from smearmil.data.simulate import SimulationConfig, simulate

runner = CliRunner()


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed")
    return exe


NARROWEST = 500  # headless Chromium lays a page out at least this wide, whatever --window-size asks
FRAME = """<!DOCTYPE html><html><head><meta charset=utf-8><style>body{{margin:0}}
iframe{{border:0;display:block;width:{width}px;height:{height}px}}</style></head><body>
<iframe id=page src="{src}"></iframe><script>
document.getElementById('page').addEventListener('load', () => {{
  const frame = document.getElementById('page'), body = frame.contentDocument.body;
  for (const name of ['data-images', 'data-errors', 'data-overflow', 'data-width'])
    document.body.setAttribute(name, body.getAttribute(name));
}});
</script></body></html>"""


def render(
    page: Path, tmp: Path, size: tuple[int, int] | None = None, screenshot: Path | None = None
) -> tuple[str, str]:
    """The DOM after load (with the page's own image/error/overflow check) and Chromium's log; ``size``: the
    window (width, height) the page is laid out in, ``screenshot``: where to save a PNG of it. With a size the
    page is shown in a frame of that size (Chromium's window is never narrower than 500 px) and its checks
    are copied onto the frame's page."""
    target = page
    if size:
        target = tmp / f"frame-{size[0]}.html"
        target.write_text(FRAME.format(width=size[0], height=size[1], src=page.resolve().as_uri()))
        window = (max(size[0], NARROWEST), size[1])
    extra = [f"--window-size={window[0]},{window[1]}", "--hide-scrollbars"] if size else []
    extra += [f"--screenshot={screenshot}"] if screenshot else []
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",  # the frame's page reads the page it frames
            f"--user-data-dir={tmp / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            *extra,
            "--dump-dom",
            target.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if screenshot and size and size[0] < NARROWEST:
        from PIL import Image

        with Image.open(screenshot) as shot:
            shot.crop((0, 0, *size)).save(screenshot)
    return result.stdout, result.stderr


def check(dom: str, log: str) -> tuple[int, int, int, list[str]]:
    images = re.search(r'data-images="(\d+)/(\d+)"', dom)
    errors = re.search(r'data-errors="(\d+)"', dom)
    assert images and errors, "the page's load check did not run"
    console_errors = [
        line for line in log.splitlines() if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)
    ]
    return int(images[1]), int(images[2]), int(errors[1]), console_errors


def assert_renders(page: Path, tmp: Path, min_images: int = 1) -> str:
    """The page loads every image without an error in headless Chromium; returns the DOM after load."""
    dom, log = render(page, tmp)
    loaded, total, errors, console = check(dom, log)
    assert total >= min_images and loaded == total and errors == 0 and not console, (loaded, total, errors, console)
    return dom


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows (cell texts) of the first table after ``<h2>heading</h2>``."""
    section = text.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]
    body = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body)
    ]


def table_header(text: str, heading: str) -> list[str]:
    section = text.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]
    return [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", section.split("</thead>", 1)[0])]


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("report")
    cohort = simulate(
        base / "cohort", SimulationConfig(patients=12, cells_min=6, cells_max=10, size=32, seed=8), progress=False
    )
    config = base / "tiny.yaml"
    config.write_text(
        "base: cpu-moe-cnn\nimage: {size: 32, crop: null}\n"
        "train: {epochs: 2, stages: {mlp: {epochs: 5}, moe: {epochs: 1}}}\n"
    )
    result = runner.invoke(
        app,
        [
            "cv",
            str(cohort),
            "--config",
            str(config),
            "--folds",
            "3",
            "--out",
            str(base / "cv"),
            "--cache-dir",
            str(base / "k"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    return cohort, base / "cv", base / "k"


@pytest.mark.slow
def test_repeatability_json_and_table(cv_run: tuple[Path, Path, Path]) -> None:
    cohort, run, cache = cv_run
    result = runner.invoke(
        app,
        [
            "repeatability",
            str(run),
            str(cohort),
            "--sets",
            "4",
            "--fraction",
            "0.5",
            "--json",
            "--cache-dir",
            str(cache),
        ],
    )
    assert result.exit_code == 0, result.output
    public = json.loads(result.stdout)
    assert set(public) == {"models"} and set(public["models"]) == {"CNN", "MLP", "AVG", "MOE"}
    for m in public["models"].values():
        assert set(m) == {
            "disagreement_rate",
            "majority_vote_accuracy",
            "mean_set_disagreement",
            "set_accuracy",
            "majority_ties",
        }
        assert 0 <= m["disagreement_rate"] <= 1
    full = json.loads((run / "repeatability.json").read_text())
    assert full["models"]["MLP"]["disagreement_rate"] == 0.0  # attributes do not change between image sets
    patients = full["patients"]["MOE"]
    assert len(patients) == 12 and all(p["sets"] == 4 for p in patients.values())  # every patient, from its test fold
    assert (run / "repeatability.png").is_file()


@pytest.fixture(scope="module")
def cv_report(cv_run: tuple[Path, Path, Path]) -> Path:
    """The report of the CV run (with its repeatability), written by `smearmil report`."""
    cohort, run, cache = cv_run
    if not (run / "repeatability.json").is_file():
        runner.invoke(app, ["repeatability", str(run), str(cohort), "--sets", "3", "--cache-dir", str(cache), "-q"])
    result = runner.invoke(app, ["report", str(run), "--galleries", "2", "--cache-dir", str(cache), "-q"])
    assert result.exit_code == 0, result.output
    return run / "report.html"


@pytest.mark.slow
def test_report_renders_in_headless_chromium(cv_report: Path, tmp_path: Path) -> None:
    text = cv_report.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    for heading in (
        "Data",
        "Results (test patients)",
        "Patients",
        "Calibration and operating points",
        "Training curves",
        "Repeatability",
        "Cells that drive the decision",
        "Resolved configuration",
        "Provenance",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert (cv_report.parent / "report.md").read_text().count("![") == text.count("<img")
    assert_renders(cv_report, tmp_path, min_images=8)
    # the check does notice a broken image
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1))
    loaded, total, _, _ = check(*render(broken, tmp_path))
    assert loaded == total - 1


@pytest.mark.slow
def test_report_names_the_positive_class_and_lists_every_patient(
    cv_run: tuple[Path, Path, Path], cv_report: Path
) -> None:
    _, run, _ = cv_run
    text = cv_report.read_text()
    assert "sensitivity (positive class: tumoral)" in text and "specificity (negative class: reactive)" in text
    header = table_header(text, "Patients")
    assert header == [
        "patient",
        "true class",
        "P(tumoral)",
        "prediction",
        "result",
        "fold",
        "gate: image expert weight",
        "gallery",
    ]
    rows = table_rows(text, "Patients")
    with (run / "predictions.csv").open() as handle:
        predictions = {r["patient"]: r for r in csv.DictReader(handle)}
    assert sorted(r[0] for r in rows) == sorted(predictions)  # every patient once
    wrong = [r[0] != "" and predictions[r[0]]["label"] != predictions[r[0]]["prediction"] for r in rows]
    assert wrong == sorted(wrong, reverse=True)  # misclassified first
    for r in rows:
        p = predictions[r[0]]
        assert r[1] == p["label"] and r[3] == p["prediction"] and r[5] == p["fold"]
        assert float(r[2]) == pytest.approx(float(p["prob_tumoral"]), abs=6e-4)
    gates = {}
    for path in run.glob("*/experts.csv"):
        gates.update({g["patient"]: float(g["gate_image_expert"]) for g in csv.DictReader(path.open())})
    assert all(float(r[6]) == pytest.approx(gates[r[0]], abs=6e-4) for r in rows)  # the MOE gate of each patient
    # the patients shown link to their galleries, and every link lands on a figure of the page
    links = re.findall(r'href="#(gallery-[^"]+)"', text)
    assert len(links) == 2 and all(f'<figure id="{anchor}">' in text for anchor in links)
    shown = [next(r for r in rows if f"gallery-{r[0]}" == anchor) for anchor in links]
    assert {r[1] for r in shown} == {"reactive", "tumoral"}  # both classes, misclassified first
    assert [r[4] for r in shown] == sorted((r[4] for r in shown), key=lambda x: x != "misclassified")
    assert "each cell&#x27;s share of the image expert&#x27;s evidence (+ toward" in text


@pytest.mark.slow
def test_operating_points_and_provenance(cv_run: tuple[Path, Path, Path], cv_report: Path) -> None:
    _, run, _ = cv_run
    text = cv_report.read_text()
    points = table_rows(text, "Calibration and operating points")
    thresholds = [float(r[0]) for r in points]
    assert thresholds == sorted(thresholds) and {0.1, 0.5, 0.9} <= set(thresholds)
    marked = [r for r in points if r[5] == "model's threshold"]
    summary = json.loads((run / "summary.json").read_text())
    assert [float(r[0]) for r in marked] == sorted({f["threshold"] for f in summary["folds"]})
    at_model = marked[0]
    assert float(at_model[1]) == pytest.approx(summary["pooled"]["sensitivity"], abs=6e-4)
    assert float(at_model[2]) == pytest.approx(summary["pooled"]["specificity"], abs=6e-4)
    sens = [float(r[1]) for r in points]
    assert sens == sorted(sens, reverse=True)  # a higher threshold never finds more positives
    provenance = dict((r[0], r[1]) for r in table_rows(text, "Provenance"))
    info = json.loads((run / "run.json").read_text())
    for key, value in info.items():
        if isinstance(value, dict):
            assert all(f"{key}.{k}" in provenance for k in value)
        else:
            assert key in provenance
    assert provenance["command"] == "cv" and provenance["kind of output"] == "cv"


@pytest.mark.slow
def test_report_fits_a_phone_and_a_desktop_and_sorts(cv_report: Path, tmp_path: Path) -> None:
    from PIL import Image

    for width, height in ((390, 844), (1280, 900)):
        shot = tmp_path / f"report-{width}.png"
        dom, _ = render(cv_report, tmp_path, (width, height), shot)
        assert f'data-width="{width}"' in dom, "the page was not laid out at the width asked for"
        assert 'data-overflow="false"' in dom, f"the page scrolls sideways at {width} px"
        with Image.open(shot) as image:
            assert image.size == (width, height)
    # the check does notice a page wider than the screen
    wide = tmp_path / "wide.html"
    wide.write_text(cv_report.read_text().replace("<h2>Data</h2>", '<div style="width:900px">x</div><h2>Data</h2>'))
    dom, _ = render(wide, tmp_path, (390, 844))
    assert 'data-overflow="true"' in dom
    # a click on a header sorts the table by that column (numbers as numbers), a second click reverses it
    clicks = tmp_path / "clicks.html"
    script = """<script>window.addEventListener('load', () => setTimeout(() => {
      const t = document.querySelector('table.sortable'); const th = t.querySelectorAll('thead th')[2];
      const column = () => Array.from(t.tBodies[0].rows).map(r => r.cells[2].textContent).join(',');
      th.click(); document.body.setAttribute('data-up', column());
      th.click(); document.body.setAttribute('data-down', column());
    }, 0));</script></body>"""
    clicks.write_text(cv_report.read_text().replace("</body>", script))
    dom, _ = render(clicks, tmp_path)
    up = [float(v) for v in re.search(r'data-up="([^"]+)"', dom)[1].split(",")]
    down = [float(v) for v in re.search(r'data-down="([^"]+)"', dom)[1].split(",")]
    assert up == sorted(up) and down == sorted(up, reverse=True) and len(up) == 12
