"""Synthetic cohorts that look like stained smears at the cell scale, with known abnormal cells.

Each image shows pale pink red cells on a plasma background and one purple nucleated white cell in
the centre, with chromatin texture and stain variation per patient and per cell. In diseased bags a
fraction of the cells is abnormal in a way that depends on the class (larger with a nucleolus,
cleaved, granular, irregular). Age and lymphocyte count are drawn per class with overlap, so neither
modality alone is perfect. The output is the lymphocytosis layout plus ``cell_truth.csv``.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..utils.outputs import OutputRefused, claim_output, read_marker
from ..utils.progress import track

ABNORMALITIES = ("large_nucleolus", "cleaved", "granular", "irregular")

# colours in linear RGB, 0..1
PLASMA = np.array([0.93, 0.87, 0.88])
RED_CELL = np.array([0.88, 0.66, 0.68])
CYTOPLASM = np.array([0.70, 0.72, 0.88])
NUCLEUS = np.array([0.36, 0.20, 0.50])
NUCLEOLUS = np.array([0.62, 0.52, 0.78])
GRANULE = np.array([0.42, 0.12, 0.32])


@dataclass
class SimulationConfig:
    """What to simulate. ``scenario="expert-split"`` makes half the patients readable only from their
    images (attributes in an ambiguous band) and half only from their attributes (normal-looking cells),
    so that a gate choosing an expert per patient can beat both experts."""

    patients: int = 60
    cells_min: int = 16
    cells_max: int = 48
    size: int = 64
    seed: int = 0
    classes: int = 2
    class_names: list[str] | None = None
    abnormal_fraction: tuple[float, float] = (0.2, 0.5)
    scenario: Literal["standard", "expert-split"] = "standard"
    reference_date: str = "2020-01-01"
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError("a cohort needs at least 2 classes")
        if not 1 <= self.cells_min <= self.cells_max:
            raise ValueError(f"cells per patient must satisfy 1 <= MIN <= MAX, got {self.cells_min}:{self.cells_max}")
        if self.patients < self.classes:
            raise ValueError(f"need at least one patient per class ({self.classes})")
        if self.size < 16:
            raise ValueError("image size must be at least 16 px")
        lo, hi = self.abnormal_fraction
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"abnormal fraction range must lie in [0, 1], got {self.abnormal_fraction}")
        if self.class_names is None:
            self.class_names = (
                ["reactive", "tumoral"] if self.classes == 2 else [f"class_{k}" for k in range(self.classes)]
            )
        if len(self.class_names) != self.classes:
            raise ValueError(f"{self.classes} classes but {len(self.class_names)} class names")

    def abnormality(self, label: int) -> str | None:
        """The abnormal cell kind of class ``label`` (class 0 has none)."""
        return None if label == 0 else ABNORMALITIES[(label - 1) % len(ABNORMALITIES)]


@dataclass
class CellSpec:
    abnormal: str | None = None
    stain: np.ndarray = field(default_factory=lambda: np.ones(3))


def _soft(distance_inside: np.ndarray, edge: float) -> np.ndarray:
    """Anti-aliased mask from a signed distance (positive inside), ``edge`` wide."""
    return np.clip(distance_inside / edge + 0.5, 0.0, 1.0)


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    image *= 1.0 - mask[..., None]
    image += mask[..., None] * colour


def render_cell(rng: np.random.Generator, size: int, spec: CellSpec) -> np.ndarray:
    """One cell image, (size, size, 3) uint8."""
    px = 2.0 / size
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    image = np.broadcast_to(PLASMA * spec.stain, (size, size, 3)).copy()
    image *= 1.0 + 0.02 * gaussian_filter(rng.standard_normal((size, size)), size / 12)[..., None]

    for _ in range(rng.integers(3, 8)):  # red cells, with central pallor
        cx, cy = rng.uniform(-1.1, 1.1, size=2)
        r = rng.uniform(0.30, 0.40)
        d = np.hypot(xx - cx, yy - cy)
        pallor = 0.35 * np.exp(-((d / (0.45 * r)) ** 2))
        colour = RED_CELL * spec.stain
        _paint(image, _soft(r - d, 2 * px), colour)
        image += _soft(r - d, 2 * px)[..., None] * pallor[..., None] * (PLASMA - colour)

    kind = spec.abnormal
    large = kind == "large_nucleolus"
    theta = np.arctan2(yy, xx)
    rc = rng.uniform(0.44, 0.52) * (1.3 if large else 1.0)
    wobble = sum(rng.normal(0, 0.02) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3))
    d0 = np.hypot(xx, yy)
    cytoplasm = _soft(rc * (1 + wobble) - d0, 2 * px)
    _paint(image, cytoplasm, CYTOPLASM * spec.stain * rng.uniform(0.96, 1.04))

    nx, ny = rng.normal(0, 0.04, size=2)
    rn = rc * rng.uniform(0.72, 0.82)
    rough = 0.12 if kind == "irregular" else 0.03
    harmonics = sum(rng.normal(0, rough) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4, 5))
    dn = np.hypot(xx - nx, yy - ny)
    nucleus = _soft(rn * (1 + harmonics) - dn, 1.5 * px)
    if kind == "cleaved":
        angle = rng.uniform(0, 2 * np.pi)
        ux, uy = np.cos(angle), np.sin(angle)
        along = (xx - nx) * ux + (yy - ny) * uy
        across = np.abs(-(xx - nx) * uy + (yy - ny) * ux)
        cleft = _soft(0.09 * rn - across, px) * (along > 0.1 * rn)
        nucleus *= 1.0 - cleft
    chromatin = gaussian_filter(rng.standard_normal((size, size)), max(0.6, size / 64))
    chromatin /= chromatin.std() + 1e-8
    nucleus_colour = NUCLEUS * spec.stain
    shade = (1.0 + 0.12 * chromatin)[..., None]
    image = image * (1.0 - nucleus[..., None]) + nucleus[..., None] * nucleus_colour * shade

    if large:  # one or two pale nucleoli
        for _ in range(rng.integers(1, 3)):
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.4 * rn)
            d = np.hypot(xx - nx - rad * np.cos(ang), yy - ny - rad * np.sin(ang))
            _paint(image, _soft(0.2 * rn - d, 1.5 * px) * nucleus, NUCLEOLUS * spec.stain)
    if kind == "granular":
        for _ in range(rng.integers(15, 30)):
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.3 * rc, 0.95 * rc)
            d = np.hypot(xx - rad * np.cos(ang), yy - rad * np.sin(ang))
            _paint(image, _soft(0.05 - d, px) * cytoplasm, GRANULE * spec.stain)

    image *= rng.normal(1.0, 0.03)
    image += rng.normal(0, 0.012, size=image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _attributes(
    rng: np.random.Generator, label: int, config: SimulationConfig, informative: str
) -> tuple[float, float]:
    """(age in years, lymphocyte count in 10^9/L), overlapping between classes."""
    if informative == "images":  # an ambiguous band, the same for every class
        return float(rng.normal(62, 4)), float(np.exp(rng.normal(np.log(9.0), 0.12)))
    if informative == "attributes":  # well separated
        age = rng.normal(40, 8) if label == 0 else rng.normal(82, 5)
        count = np.exp(rng.normal(np.log(4.5), 0.15) if label == 0 else rng.normal(np.log(30.0), 0.2))
        return float(np.clip(age, 18, 100)), float(count)
    shift = min(label, 1) + 0.15 * max(label - 1, 0)
    age = rng.normal(58 + 14 * shift, 13)
    count = np.exp(rng.normal(np.log(6.0) + 0.8 * shift, 0.5))
    return float(np.clip(age, 18, 100)), float(count)


def _simulate_patient(config: SimulationConfig, index: int, label: int, split: Path) -> tuple[str, list[str]]:
    """Write one patient's cells; return its clinical row and its truth rows."""
    rng = np.random.default_rng([config.seed, index])
    pid = f"P{index:0{max(3, len(str(config.patients - 1)))}d}"
    informative = "both" if config.scenario == "standard" else ("images" if index % 2 == 0 else "attributes")
    age, count = _attributes(rng, label, config, informative)
    gender = "M" if rng.random() < 0.5 else "F"
    dob = date.fromisoformat(config.reference_date) - timedelta(days=round(age * 365.25))
    row = f"{pid},{label},{gender},{dob.month}/{dob.day}/{dob.year},{count:.2f}"
    n_cells = int(rng.integers(config.cells_min, config.cells_max + 1))
    kind = config.abnormality(label) if informative != "attributes" else None
    fraction = rng.uniform(*config.abnormal_fraction) if kind else 0.0
    abnormal = np.zeros(n_cells, dtype=bool)
    abnormal[rng.choice(n_cells, int(round(fraction * n_cells)), replace=False)] = True
    stain = rng.normal(1.0, 0.04, size=3)
    (split / pid).mkdir()
    truth = []
    for j in range(n_cells):
        spec = CellSpec(kind if abnormal[j] else None, stain * rng.normal(1.0, 0.015, size=3))
        buffer = io.BytesIO()
        Image.fromarray(render_cell(rng, config.size, spec)).save(buffer, format="JPEG", quality=config.jpeg_quality)
        name = f"{pid}_{j:03d}.jpg"
        (split / pid / name).write_bytes(buffer.getvalue())
        truth.append(f"{pid},{split.name}/{pid}/{name},{int(abnormal[j])},{spec.abnormal or 'normal'}")
    return row, truth


SIMULATED = "simulated-cohort"


def simulate(
    out: str | Path,
    config: SimulationConfig | None = None,
    progress: bool = True,
    overwrite: bool = False,
    workers: int = 2,
) -> Path:
    """Write a synthetic cohort to ``out`` (lymphocytosis layout plus ``cell_truth.csv``); same seed, same bytes.

    The cohort is written to a hidden folder beside ``out`` and renamed into place when complete. An
    existing ``out`` is replaced only with ``overwrite`` and only if it is a simulated cohort itself.
    """
    config = config or SimulationConfig()
    out = Path(out)
    if out.is_symlink():
        raise OutputRefused(f"{out} is a symbolic link; give the folder it points to")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        marker = read_marker(out) if out.is_dir() and not out.is_symlink() else None
        if (marker or {}).get("kind") != SIMULATED:
            raise OutputRefused(
                f"{out} exists and is not a cohort smearmil simulated; it is left untouched: choose another folder"
            )
        if not overwrite:
            raise FileExistsError(f"{out} holds a simulated cohort already; pass --overwrite to replace it")
    work = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    claim_output(work, SIMULATED, {"simulation": asdict(config)})
    split = work / "trainset"
    split.mkdir(parents=True)
    labels = np.arange(config.patients) % config.classes
    np.random.default_rng([config.seed, 1_000_003]).shuffle(labels)
    n = config.patients
    try:
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            results = pool.map(_simulate_patient, [config] * n, range(n), labels.tolist(), [split] * n, chunksize=4)
            done = list(track(results, "simulating patients", total=n, enabled=progress))
        rows = [row for row, _ in done]
        truth = [line for _, lines in done for line in lines]
        (split / "trainset_true.csv").write_text("ID,LABEL,GENDER,DOB,LYMPH_COUNT\n" + "\n".join(rows) + "\n")
        (work / "cell_truth.csv").write_text("patient,file,abnormal,kind\n" + "\n".join(truth) + "\n")
        (work / "classes.txt").write_text("\n".join(config.class_names or []) + "\n")
        (work / "simulation.json").write_text(json.dumps(asdict(config), indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def read_truth(root: str | Path) -> dict[str, bool]:
    """``{relative file: is abnormal}`` from a simulated cohort's ``cell_truth.csv``."""
    lines = (Path(root) / "cell_truth.csv").read_text().splitlines()[1:]
    return {parts[1]: parts[2] == "1" for parts in (line.split(",") for line in lines if line)}
