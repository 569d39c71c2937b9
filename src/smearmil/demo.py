"""``smearmil demo``: the main job on the embedded default, a synthetic cohort.

simulate -> inspect -> split by patient -> cache -> quick cross-validation of the CNN, MLP and
mixture-of-experts models on the same folds -> comparison table -> repeatability of the MOE run
-> a self-contained HTML report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .data.cache import build_cache
from .data.images import Preprocessing
from .data.inspect import InspectReport, summarise
from .data.simulate import SimulationConfig, simulate
from .data.splits import SplitPlan, make_splits
from .data.validation import load_cohort
from .models.kinds import MODELS, data_label
from .protocols.compare import comparison_markdown
from .protocols.cv import CVResult, CVSettings, run_cv, run_on_same_folds
from .protocols.repeatability import run_repeatability
from .report.html import build_report
from .training.config import load_config
from .training.methods.run import RunMethod
from .utils.atomic import write_json, write_text
from .utils.config_files import merge_dicts
from .utils.outputs import claim_output, run_fingerprint
from .utils.threads import fit_threads

DEMO_SIMULATION = SimulationConfig(patients=60, cells_min=16, cells_max=48, size=64, seed=0)
DEMO_FOLDS = 3
# the CPU presets, at the simulator's 64 px and with fewer epochs, so the demo takes a few minutes
DEMO_OVERRIDES: dict[str, Any] = {"image": {"size": 64, "crop": None}, "train": {"epochs": 8, "lr_steps": [6]}}
DEMO_METHODS = {"cnn": "cpu-cnn", "mlp": "cpu-mlp", "moe": "cpu-moe-cnn"}
DEMO_METHOD_OVERRIDES: dict[str, dict[str, Any]] = {
    "mlp": {"train": {"epochs": 150, "lr_steps": []}},
    # P2 (experts alone, then the gate): a few epochs suffice, where P1 trains the whole mixture from scratch
    "moe": {"model": {"paradigm": "P2"}, "train": {"stages": {"mlp": {"epochs": 150}, "moe": {"epochs": 4}}}},
}


# measured on the reference machine (2 idle cores, torch 2.13 CPU): the whole demo, and CALIBRATION_STEPS
# training steps of its CNN (estimated_seconds)
DEMO_REFERENCE_SECONDS = 170.0
CALIBRATION_STEPS = 5
CALIBRATION_REFERENCE_SECONDS = 0.13


def headline(summary: dict[str, Any]) -> str:
    """Balanced accuracy and ROC-AUC of a CV summary, mean ± std over folds."""
    parts = []
    for key, label in (("balanced_accuracy", "BA"), ("roc_auc", "ROC-AUC")):
        m = summary.get("metrics", {}).get(key, {})
        if m.get("mean") is not None:
            parts.append(f"{label} {m['mean']:.3f} ± {m.get('std') or 0:.3f}")
    return ", ".join(parts) or "no metric"


@dataclass
class DemoResult:
    out: Path
    cohort: Path
    report: InspectReport
    splits: SplitPlan
    cache_dir: Path
    cached_cells: int
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    table: str = ""
    report_html: Path | None = None


def estimated_seconds() -> float:
    """The demo's wall time on this machine now: its time on the reference machine scaled by how long a
    few training steps of its CNN take here, with the threads the demo will use (so a busy machine
    or a slower one shows)."""
    import torch

    from .models.specs import EncoderConfig

    fit_threads()
    torch.manual_seed(0)
    encoder = EncoderConfig(name="resnetk", k=8).build(DEMO_SIMULATION.size)
    optimiser = torch.optim.Adam(encoder.parameters())
    cells = torch.rand(32, 3, DEMO_SIMULATION.size, DEMO_SIMULATION.size)

    def step() -> None:
        encoder(cells).sum().backward()
        optimiser.step()
        optimiser.zero_grad()

    for _ in range(3):  # warm-up: a cold process's first steps are slow
        step()
    start = time.perf_counter()
    for _ in range(CALIBRATION_STEPS):
        step()
    return DEMO_REFERENCE_SECONDS * (time.perf_counter() - start) / CALIBRATION_REFERENCE_SECONDS


def run_demo(
    out: str | Path = "smearmil-demo",
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    say: Callable[[Any], None] | None = None,
) -> DemoResult:
    """The whole demo in ``out``; ``say`` receives each step's result as soon as it is known."""
    out = Path(out)
    tell = say or (lambda _: None)
    cohort_dir = out / "cohort"
    config = DEMO_SIMULATION
    claim_output(out, "demo", run_fingerprint({"seed": seed, "simulation": asdict(config)}), overwrite)
    previous = cohort_dir / "simulation.json"
    if not (previous.is_file() and json.loads(previous.read_text()) == json.loads(json.dumps(asdict(config)))):
        simulate(cohort_dir, config, progress=progress, overwrite=True)
    cohort = load_cohort(cohort_dir, progress=progress)  # decodes every cell once
    report = summarise(cohort)
    tell(report.render())
    plan = make_splits(cohort, "kfold", folds=DEMO_FOLDS, seed=seed)
    tell(f"splits: {len(plan.folds)} folds by patient -> {out / 'splits.json'}")
    cache = build_cache(cohort, Preprocessing(size=config.size), out / "cache", progress=progress)
    tell(f"cache: {len(cache)} cells -> {cache.directory}")
    configs = {
        name: load_config(preset, merge_dicts(DEMO_OVERRIDES, DEMO_METHOD_OVERRIDES.get(name, {})))
        for name, preset in DEMO_METHODS.items()
    }

    def cv(name: str) -> Callable[[], CVResult]:
        settings = CVSettings(DEMO_FOLDS, seed, plan, out / "cache", progress)

        def run() -> CVResult:
            result = run_cv(cohort, RunMethod(configs[name]), out / "cv" / name, settings)
            tell(f"{name}: {headline(result.summary)} ({DEMO_FOLDS}-fold CV, test folds) -> {out / 'cv' / name}")
            return result

        return run

    results = run_on_same_folds(plan, out, {name: cv(name) for name in configs}, progress=progress)
    summaries = {name: result.summary for name, result in results.items()}
    resolved = {name: c.model_dump(mode="json") for name, c in configs.items()}
    table = comparison_markdown(
        summaries,
        f"{DEMO_FOLDS}-fold CV on the simulated cohort (test folds, mean ± std)",
        {name: data_label(MODELS.get(c.model.kind).inputs()) for name, c in configs.items()},
    )
    write_text(out / "comparison.md", table)
    write_json(
        out / "config.json",
        {
            "simulation": asdict(config),
            "splits": {"scheme": "kfold", "folds": DEMO_FOLDS, "seed": seed},
            "methods": resolved,
        },
    )
    moe_run = out / "cv" / "moe"
    run_repeatability(moe_run, cohort, sets=5, fraction=0.5, seed=seed, cache_dir=out / "cache", progress=progress)
    tell(f"repeatability of the moe run over 5 image sets per patient -> {moe_run / 'repeatability.json'}")
    page = build_report(
        moe_run, cohort_dir, galleries=2, cache_dir=out / "cache", progress=progress, comparison=summaries
    )
    return DemoResult(out, cohort_dir, report, plan, cache.directory, len(cache), summaries, table, page)
