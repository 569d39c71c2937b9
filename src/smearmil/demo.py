"""``smearmil demo``: the main job on the embedded default, a synthetic cohort."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .data.cache import build_cache
from .data.images import Preprocessing
from .data.inspect import InspectReport, inspect_data
from .data.simulate import SimulationConfig, simulate
from .data.splits import SplitPlan, make_splits
from .data.validation import load_cohort
from .utils.atomic import write_json

DEMO_SIMULATION = SimulationConfig(patients=60, cells_min=16, cells_max=48, size=64, seed=0)


@dataclass
class DemoResult:
    out: Path
    cohort: Path
    report: InspectReport
    splits: SplitPlan
    cache_dir: Path
    cached_cells: int


def run_demo(out: str | Path = "smearmil-demo", folds: int = 5, seed: int = 0, progress: bool = True) -> DemoResult:
    """Simulate a cohort, inspect it, split it by patient and cache its decoded images."""
    out = Path(out)
    cohort_dir = out / "cohort"
    config = DEMO_SIMULATION
    previous = cohort_dir / "simulation.json"
    if not (previous.is_file() and json.loads(previous.read_text()) == json.loads(json.dumps(asdict(config)))):
        simulate(cohort_dir, config, progress=progress, overwrite=True)
    report = inspect_data(cohort_dir, progress=progress)
    cohort = load_cohort(cohort_dir, progress=False)
    plan = make_splits(cohort, "kfold", folds=folds, seed=seed)
    plan.save(out / "splits.json")
    cache = build_cache(cohort, Preprocessing(size=config.size), out / "cache", progress=progress)
    write_json(out / "config.json", {
        "simulation": asdict(config),
        "splits": {"scheme": "kfold", "folds": folds, "seed": seed},
        "preprocessing": {"size": config.size, "crop": None},
    })
    return DemoResult(out, cohort_dir, report, plan, cache.directory, len(cache))
