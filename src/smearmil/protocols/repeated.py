"""Repeated stratified CV (``--seeds 0,1,2``): one CV per seed in ``OUT/seed-<s>/``, and a summary
over seeds and folds in ``OUT/summary.json``.

Per metric the summary gives ``mean`` (over every test fold of every seed), ``std`` (over those
folds), ``std_seeds`` (of the per-seed means: how much the estimate moves with the fold assignment)
and ``seed_means``; ``per_seed`` holds every seed's own summary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..utils.atomic import write_json, write_text
from ..utils.outputs import claim_output, run_fingerprint
from ..utils.progress import say, stage, stage_label
from ..utils.scoring import METRICS


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` -> a list of distinct seeds."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        low, sep, high = part.partition("-")
        try:
            seeds += list(range(int(low), int(high) + 1)) if sep and low else [int(part)]
        except ValueError:
            raise ValueError(f"--seeds {text!r}: give integers such as 0,1,2 or a range such as 0-4") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: give one or more distinct integers")
    return seeds


def _clean(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def over_seeds(fold_values: Mapping[int, Sequence[float | None]]) -> dict[str, Any]:
    """One metric's statistics from its per-fold values of each seed (None: undefined on that fold)."""
    per_seed = {s: np.array([v for v in vals if v is not None], dtype=float) for s, vals in fold_values.items()}
    every = np.concatenate(list(per_seed.values())) if per_seed else np.zeros(0)
    means = [float(v.mean()) if v.size else None for v in per_seed.values()]
    defined = [m for m in means if m is not None]
    n_folds = sum(len(v) for v in fold_values.values())
    cell: dict[str, Any] = {
        "mean": _clean(every.mean()) if every.size else None,
        "std": _clean(every.std(ddof=1)) if every.size > 1 else None,
        "std_seeds": _clean(float(np.std(defined, ddof=1))) if len(defined) > 1 else None,
        "seed_means": means,
    }
    if every.size < n_folds:
        cell.update(n_folds=int(every.size), of=n_folds)
    return cell


def combine_cv_summaries(summaries: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The over-seeds ``metrics`` of several CV summaries (each with a ``folds`` list)."""
    return {
        m: over_seeds({s: [f.get(m) for f in summary["folds"]] for s, summary in summaries.items()}) for m in METRICS
    }


def run_seeds(
    seeds: Sequence[int],
    out: str | Path,
    run_one: Callable[[int, Path], dict[str, Any]],
    combine: Callable[[dict[int, dict[str, Any]]], dict[str, Any]],
    progress: bool = True,
    config_text: str | None = None,
) -> dict[str, Any]:
    """``run_one(seed, OUT/seed-<seed>)`` for every seed (each resumes on its own), then the combined
    summary ``{"split": "test", "seeds", **combine(per-seed results), "per_seed", "wall_seconds"}``;
    ``config_text`` (the resolved config) is written as ``OUT/config.yaml``."""
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config_text is not None:
        write_text(out / "config.yaml", config_text)
    results: dict[int, dict[str, Any]] = {}
    for i, seed in enumerate(seeds):
        with stage(f"seed {seed} ({i + 1}/{len(seeds)})"):
            if progress:
                say(stage_label())
            results[seed] = run_one(seed, out / f"seed-{seed}")
    summary = {
        "split": "test",
        "seeds": list(seeds),
        **combine(results),
        "per_seed": {str(s): r for s, r in results.items()},
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_json(out / "summary.json", summary)
    return summary


def run_cv_seeds(
    seeds: Sequence[int],
    out: str | Path,
    run_one: Callable[[int, Path], dict[str, Any]],
    settings: dict[str, Any],
    data_identity: str,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Repeated CV of one config: ``run_one(seed, folder)`` returns that seed's CV summary."""
    claim_output(Path(out), "cv-seeds", run_fingerprint({**settings, "seeds": list(seeds)}, data_identity), overwrite)
    first: dict[str, Any] = {}

    def combine(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
        first.update(next(iter(results.values())))
        return {
            "model": first.get("model"),
            "class_names": first.get("class_names"),
            "metrics": combine_cv_summaries(results),
        }

    text = yaml.safe_dump({**settings, "seeds": list(seeds)}, sort_keys=False)
    return run_seeds(seeds, out, run_one, combine, progress, text)
