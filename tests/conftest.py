"""Shared fixtures: small cohorts written in temp folders, and the real samples (skipped if absent)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Rich wraps at the terminal's width, and a test worker has none: one width everywhere, so that what a
# test looks for in an error message is never split across lines. Under pytest-xdist each worker takes
# one core, so libraries use one thread each (set before torch is imported).
os.environ.setdefault("COLUMNS", "200")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[variable] = "1"

import numpy as np
import pytest
from PIL import Image

from smearmil.data.simulate import SimulationConfig, simulate


def run_in_process(*args: object) -> subprocess.CompletedProcess[str]:
    """The command line in-process (no interpreter start-up, numba's compiled UMAP reused), as a finished
    process: exit code, standard output, standard error."""
    from typer.testing import CliRunner

    from smearmil.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return subprocess.CompletedProcess([str(a) for a in args], result.exit_code, result.stdout, result.stderr)


def invoke(*args: object) -> str:
    """Run the command line in-process and return its standard output; a non-zero exit fails the test."""
    from typer.testing import CliRunner

    from smearmil.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


SHARED = Path(os.environ.get("SMEARMIL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data samples not found at {SHARED}")
    return SHARED


def write_image(path: Path, seed: int, size: int = 24, fmt: str = "JPEG") -> Path:
    """A small random RGB image (distinct per seed)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


DEFAULT_ROWS = [
    ("P1", "0", "M", "1/30/1978", "5.1"),
    ("P2", "1", "F", "19-09-1944", "12.5"),
    ("P3", "0", "f", "3/22/1960", "4.2"),
    ("P4", "1", "M", "11/3/1933", "30.0"),
]


def write_lymph_cohort(
    root: Path,
    rows: list[tuple[str, ...]] | None = None,
    header: str = "ID,LABEL,GENDER,DOB,LYMPH_COUNT",
    cells: int = 3,
    folders: list[str] | None = None,
) -> Path:
    """A lymphocytosis-layout cohort: ``root/trainset/<ID>/*.jpg`` and ``trainset_true.csv``."""
    rows = DEFAULT_ROWS if rows is None else rows
    split = root / "trainset"
    split.mkdir(parents=True, exist_ok=True)
    (split / "trainset_true.csv").write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    for k, pid in enumerate(folders if folders is not None else [r[0] for r in rows]):
        for j in range(cells):
            write_image(split / pid / f"{pid}_{j}.jpg", seed=100 * k + j)
    return root


@pytest.fixture
def lymph_cohort(tmp_path: Path) -> Path:
    return write_lymph_cohort(tmp_path / "cohort")


@pytest.fixture(scope="session")
def sim_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated cohort shared by the session (read-only for tests)."""
    out = tmp_path_factory.mktemp("sim") / "cohort"
    return simulate(
        out, SimulationConfig(patients=12, cells_min=4, cells_max=8, size=32, seed=3), progress=False, workers=1
    )


def adam_steps(model: object, optimiser: object, steps: int, size: int = 32, seed: int = 1) -> list[object]:
    """``steps`` training steps of a 2-attribute MIL model on two random bags (7 and 3 cells of ``size`` px),
    the same bags for every model given the same ``seed``; returns the losses."""
    import torch

    from smearmil.models.base import Bags

    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        bags = Bags.of(torch.randn(2, 2, generator=g), [torch.randn(n, 3, size, size, generator=g) for n in (7, 3)])
        loss = model.loss(model(bags), torch.tensor([0, 1]))  # type: ignore[attr-defined]
        optimiser.zero_grad()  # type: ignore[attr-defined]
        loss.backward()
        optimiser.step()  # type: ignore[attr-defined]
        losses.append(loss.detach())
    return losses
