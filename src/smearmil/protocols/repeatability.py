"""Repeatability over several image sets of one blood sample (the paper's Table 5).

For each patient, R image sets are drawn without replacement (each a fraction F of its cells), or
taken from the sub-folders of its folder; every model of the run predicts every set. Each patient is
judged only by a model that did not train on it (its fold's model in a cross-validation).
"""

from __future__ import annotations

import csv
import io
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cache import ImageCache, build_cache
from ..data.cohort import Cohort
from ..training.predictor import Predictor
from ..training.run_dir import FoldModel, RunDir
from ..utils.atomic import write_json, write_text
from ..utils.plotting import plt, save_figure
from ..utils.scoring import predict_labels
from ..utils.spreadsheet import SafeWriter


def draw_sets(n_cells: int, sets: int, fraction: float, rng: np.random.Generator) -> list[np.ndarray]:
    """``sets`` subsets of ``round(fraction * n_cells)`` cells (at least one), each drawn without replacement."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    size = max(1, round(fraction * n_cells))
    return [np.sort(rng.choice(n_cells, size, replace=False)) for _ in range(sets)]


def folder_sets(cell_ids: Sequence[str]) -> list[np.ndarray]:
    """Sets given as sub-folders of the patient folder (``<ID>/set1/*.jpg``, ``<ID>/set2/*.jpg``)."""
    groups: dict[str, list[int]] = {}
    for i, cell in enumerate(cell_ids):
        groups.setdefault(str(Path(cell).parent), []).append(i)
    return [np.array(v) for _, v in sorted(groups.items())]


def acquisition_sets(
    cohort: Cohort, cache: ImageCache, patient_id: str, acquisitions: dict[str, str] | None = None
) -> list[np.ndarray]:
    """The image sets a patient's cells were acquired in: from ``acquisitions`` (cell file -> set name,
    a CSV's mapping), else the sub-folders of its folder (not when they are cell-type folders)."""
    return cell_sets(cohort, patient_id, cache.cell_ids(patient_id), acquisitions)


def cell_sets(
    cohort: Cohort, patient_id: str, cells: Sequence[str], acquisitions: dict[str, str] | None = None
) -> list[np.ndarray]:
    """``acquisition_sets`` of ``cells``: paths relative to the cohort root, or absolute."""
    if acquisitions is not None:
        keys = [acquisitions.get(str((cohort.root / c).resolve()), "") for c in cells]
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key:
                groups.setdefault(key, []).append(i)
        return [np.array(v) for _, v in sorted(groups.items())]
    if cohort[patient_id].cell_types is not None:
        return []  # sub-folders name cell types here, not acquisitions
    return folder_sets(cells)


def read_acquisitions(path: str | Path) -> dict[str, str]:
    """A CSV mapping cells to acquisitions: columns ``file`` (a path, absolute or relative to the CSV's
    folder) and ``set``; keyed by the resolved path, so two patients' same-named files never mix."""

    path = Path(path)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "set"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: a sets file needs the columns file and set (one row per cell)")
        return {str((path.parent / row["file"]).resolve()): row["set"] for row in reader if row["file"] and row["set"]}


MODES = ("auto", "given", "random")


def check_sets_mode(cohort: Cohort, mode: str, acquisitions: dict[str, str] | None = None) -> None:
    """Refuse, before any work, a mode that is not auto, given or random, and ``given`` when a labelled
    patient lacks two acquisitions (from its files' sub-folders or ``acquisitions``)."""
    _check_mode_name(mode)
    if mode != "given":
        return
    lacking = [
        pid
        for pid in cohort.ids
        if cohort[pid].label is not None
        and len(cell_sets(cohort, pid, [str(p) for p in cohort[pid].images], acquisitions)) < 2
    ]
    if lacking:
        raise _too_few_acquisitions(lacking)


def _check_mode_name(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"--mode must be {', '.join(MODES[:-1])} or {MODES[-1]}, got {mode!r}")


def _too_few_acquisitions(lacking: Sequence[str]) -> ValueError:
    return ValueError(
        f"patients {list(lacking)[:5]} have fewer than two acquisitions (sub-folders of their folder, or "
        "--sets-file); use --mode random for random subsets of one acquisition"
    )


def patient_sets(
    cohort: Cohort,
    cache: ImageCache | None,
    ids: Sequence[str],
    mode: str = "auto",
    sets: int = 5,
    fraction: float = 0.5,
    seed: int = 0,
    acquisitions: dict[str, str] | None = None,
) -> tuple[dict[str, list[np.ndarray]], str]:
    """Each patient's image sets and what they are: ``given`` (acquisitions: sub-folders or a sets file),
    or ``random`` (overlapping draws of ``fraction`` of one acquisition's cells). ``auto``: given when
    every patient has two or more acquisitions, else random. A patient's draws depend on the seed and its
    id only, so every model and run sees the same sets."""
    _check_mode_name(mode)
    given = {pid: acquisition_sets(cohort, cache, pid, acquisitions) for pid in ids} if cache is not None else {}
    has_given = bool(ids) and all(len(given.get(pid, [])) >= 2 for pid in ids)
    if mode == "given" and not has_given:
        raise _too_few_acquisitions([pid for pid in ids if len(given.get(pid, [])) < 2])
    if mode == "given" or (mode == "auto" and has_given):
        return given, "given"
    out = {}
    for pid in ids:
        n = len(cache.rows(pid)) if cache is not None else cohort[pid].n_cells
        rng = np.random.default_rng([seed, zlib.crc32(pid.encode())])
        out[pid] = draw_sets(n, sets, fraction, rng)
    return out, "random"


def run_repeatability(
    runs: str | Path | Sequence[str | Path],
    cohort: Cohort,
    sets: int = 5,
    fraction: float = 0.5,
    seed: int = 0,
    mode: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    out: str | Path | None = None,
    acquisitions: dict[str, str] | None = None,
    experts: bool | None = None,
) -> dict[str, Any]:
    """Predict every image set of every patient with the model of each run (the paper's Table 5), each
    patient by the models that did not train on it (by id); write ``repeatability.json`` and
    ``repeatability.csv`` in ``out`` (default: the first run) and return ``{"models": {name: {...}}, ...}``.

    Rows: with several runs, one per run, the standalone model it trained (CNN, MLP, AVG, MOE, named by
    its kind); with one run, also the experts inside a fusion model unless ``experts`` is False."""
    paths = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not paths:
        raise ValueError("give at least one run")
    experts = len(paths) == 1 if experts is None else experts
    target = Path(out) if out is not None else paths[0]
    rows: list[dict[str, Any]] = []
    known: set[str] = set()
    loaded = [(path, RunDir(path).fold_models(), RunDir(path).plan()) for path in paths]
    kinds = [folds[0].model.label.upper() for _, folds, _ in loaded]
    # one set of image sets for every run, from the cells of the first model that looks at images
    image_runs = [folds[0].model.preprocessing for _, folds, _ in loaded if folds[0].model.preprocessing is not None]
    shared = build_cache(cohort, image_runs[0], cache_dir, progress=progress) if image_runs else None
    judged = sorted(
        {
            i
            for _, _, plan in loaded
            for f in plan.folds
            for i in cohort.ids
            if i not in {*f.train, *f.val} and cohort[i].label is not None
        }
    )
    subsets, kind = patient_sets(cohort, shared, judged, mode, sets, fraction, seed, acquisitions)
    for (path, folds, plan), run_kind in zip(loaded, kinds):
        label = run_kind if kinds.count(run_kind) == 1 else f"{run_kind} ({path.name})"
        trained = {f.name: {*f.train, *f.val} for f in plan.folds}
        known |= {p for f in plan.folds for p in (*f.train, *f.val, *f.test)}
        run_rows = []
        for fold in folds:
            ids = [i for i in cohort.ids if i not in trained[fold.fold] and cohort[i].label is not None]
            if ids:
                run_rows += _predict_sets(fold, cohort, cache_dir, ids, subsets, experts, label, len(paths) > 1)
        rows += ensemble_rows(run_rows, float(np.mean([f.model.threshold for f in folds])))
    if not rows:
        raise ValueError(
            f"{cohort.root}: no labelled patient that the model(s) of {', '.join(map(str, paths))} did not train "
            "on; repeatability needs held-out patients (a run with a test split, or a labelled cohort of new patients)"
        )
    new = sorted({r["patient"] for r in rows} - known)
    result = summarise_sets(rows, cohort.class_names)
    result.update(
        {
            "sets": "given" if kind == "given" else sets,
            "image_sets": "given acquisitions" if kind == "given" else "random overlapping subsets of one acquisition",
            "fraction": None if kind == "given" else fraction,
            "seed": seed,
            "runs": [str(p) for p in paths],
            "split": f"labelled patients of {cohort.root} the models did not train on ({len(new)} new to the run)"
            if new
            else "test",
            "predicted_by": "each patient by every model of the run that did not train on it (averaged)",
        }
    )
    write_json(RunDir(target).repeatability, result)
    write_text(target / "repeatability.csv", _rows_csv(rows, cohort.class_names))
    return result


def _predict_sets(
    fold: FoldModel,
    cohort: Cohort,
    cache_dir: str | Path | None,
    ids: list[str],
    subsets: dict[str, list[np.ndarray]],
    experts: bool,
    label: str,
    prefix: bool = False,
) -> list[dict[str, Any]]:
    """Rows of one fold model (and, with ``experts``, those inside it) over every image set of ``ids``;
    the model's own rows are named ``label``."""
    models: dict[str, Predictor] = {label: fold.model}
    if experts:  # several runs: each run's rows carry its label, so two fusions' experts never pool
        models = {(f"{label}: {name}" if prefix else name): m for name, m in fold.model.parts().items()}
    rows = []
    for name, model in models.items():
        for k in range(max(len(subsets[pid]) for pid in ids)):
            chosen = [pid for pid in ids if k < len(subsets[pid])]
            cells = {pid: subsets[pid][k] for pid in chosen}
            for p in model.predict(cohort, chosen, cache_dir, False, cells, explain=False):
                predicted = int(predict_labels(p.proba[None], model.threshold)[0])
                rows.append(
                    {
                        "model": name,
                        "fold": fold.fold,
                        "patient": p.id,
                        "set": k,
                        "true": cohort.label_index(cohort[p.id]),
                        "predicted": predicted,
                        "probability": float(p.proba[predicted]),
                        "proba": p.proba.tolist(),
                    }
                )
    return rows


def ensemble_rows(rows: Sequence[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Rows of several fold models on the same (model, patient, set) averaged into one (an ensemble); a row
    no other model shares stays as it is."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["patient"], r["set"]), []).append(r)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        proba = np.mean([m["proba"] for m in members], axis=0)
        label = int(predict_labels(proba[None], threshold)[0])
        out.append(
            {
                **members[0],
                "fold": "ensemble",
                "predicted": label,
                "probability": float(proba[label]),
                "proba": proba.tolist(),
            }
        )
    return out


# what a model's row of Table 5 reports (repeatability --json and reproduce table5)
REPEATABILITY_FIGURES = (
    "mean_set_disagreement",
    "set_accuracy",
    "majority_vote_accuracy",
    "majority_ties",
    "disagreement_rate",
)


def majority_vote(predictions: Sequence[int], probabilities: np.ndarray | None = None) -> int | None:
    """The class most sets call. A tie goes to the tied class with the highest mean probability over the
    sets (``probabilities``: sets x classes); without probabilities, or if they tie too, None: no majority,
    counted as a wrong call (never the first set's)."""
    ranked = Counter(predictions).most_common()
    tied = [c for c, n in ranked if n == ranked[0][1]]
    if len(tied) == 1:
        return int(tied[0])
    if probabilities is None:
        return None
    means = {c: float(probabilities[:, c].mean()) for c in tied}
    best = max(means.values())
    winners = [c for c, m in means.items() if m == best]
    return int(winners[0]) if len(winners) == 1 else None


def summarise_sets(rows: Sequence[dict[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """Per patient: majority vote, disagreement, mean and spread of P(true class); per model, Table 5's
    figures: the mean share of a patient's sets that disagree with its majority, the share of sets called
    right, the majority vote's accuracy (a tie is wrong) and the share of patients with any disagreement."""
    per_patient: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        per_patient.setdefault((r["model"], r["patient"]), []).append(r)
    patients: dict[str, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}
    for (model, pid), preds in sorted(per_patient.items()):
        calls = [int(r["predicted"]) for r in preds]
        probas = np.array([r["proba"] for r in preds]) if all("proba" in r for r in preds) else None
        majority = majority_vote(calls, probas)
        top = Counter(calls).most_common(1)[0][1]
        true = preds[0]["true"]
        entry: dict[str, Any] = {
            "true": class_names[true],
            "majority": class_names[majority] if majority is not None else "tie",
            "tied": list(Counter(calls).values()).count(top) > 1,  # decided by mean probability, or "tie"
            "sets": len(preds),
            "disagreement": 1 - top / len(preds),
            "any_disagreement": len(set(calls)) > 1,
            "sets_right": sum(c == true for c in calls),
        }
        if all("proba" in r for r in preds):
            p_true = np.array([r["proba"][true] for r in preds])
            entry.update(p_true_mean=float(p_true.mean()), p_true_std=float(p_true.std()))
        patients.setdefault(model, {})[pid] = entry
    for model, entries in patients.items():
        values = list(entries.values())
        models[model] = {
            "patients": len(values),
            "mean_set_disagreement": float(np.mean([e["disagreement"] for e in values])),
            "set_accuracy": sum(e["sets_right"] for e in values) / sum(e["sets"] for e in values),
            "majority_vote_accuracy": float(np.mean([e["majority"] == e["true"] for e in values])),
            "majority_ties": sum(e["tied"] for e in values),
            "disagreement_rate": float(np.mean([e["any_disagreement"] for e in values])),
        }
        if all("p_true_std" in e for e in values):
            models[model]["p_true_std_mean"] = float(np.mean([e["p_true_std"] for e in values]))
    return {"models": models, "patients": patients}


def read_set_predictions(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-set predictions made elsewhere (e.g. the paper's Table 5): a CSV with columns model, patient, set,
    true, predicted (class names); the rows ``summarise_sets`` takes, and the class names in order seen."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"model", "patient", "set", "true", "predicted"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: missing columns {', '.join(sorted(missing))} (want model,patient,set,true,predicted)"
            )
        records = list(reader)
    classes: list[str] = []
    for r in records:
        for name in (r["true"], r["predicted"]):
            if name not in classes:
                classes.append(name)
    rows = [
        {
            "model": r["model"],
            "patient": r["patient"],
            "set": r["set"],
            "true": classes.index(r["true"]),
            "predicted": classes.index(r["predicted"]),
        }
        for r in records
    ]
    return rows, classes


def _rows_csv(rows: Sequence[dict[str, Any]], class_names: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(["model", "fold", "patient", "set", "label", "prediction", *(f"prob_{c}" for c in class_names)])
    for r in rows:
        writer.writerow(
            [
                r["model"],
                r["fold"],
                r["patient"],
                r["set"],
                class_names[r["true"]],
                class_names[r["predicted"]],
                *(f"{v:.6f}" for v in r["proba"]),
            ]
        )
    return buffer.getvalue()


REPEATABILITY_COLOURS = {
    "tab:green": "every set agrees, majority right",
    "tab:orange": "sets disagree, majority right",
    "tab:red": "majority vote wrong",
}


def repeatability_plot(result: dict[str, Any], path: str | Path) -> Path:
    """Per model and patient, the spread of P(true class) over the image sets, with a legend of its colours."""
    from matplotlib.lines import Line2D

    models = list(result["patients"])
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(
        1, len(models), figsize=(3.2 * len(models), 3.8), squeeze=False, sharey=True, layout="constrained"
    )
    for ax, model in zip(axes[0], models):
        entries = sorted(result["patients"][model].items(), key=lambda kv: kv[1]["p_true_mean"])
        xs = np.arange(len(entries))
        means = [e["p_true_mean"] for _, e in entries]
        stds = [e["p_true_std"] for _, e in entries]
        colours = [
            "tab:red" if e["majority"] != e["true"] else ("tab:orange" if e["any_disagreement"] else "tab:green")
            for _, e in entries
        ]
        ax.errorbar(xs, means, yerr=stds, fmt="none", ecolor="grey", lw=0.8)
        ax.scatter(xs, means, c=colours, s=12, zorder=3)
        ax.axhline(0.5, ls="--", c="grey", lw=0.6)
        m = result["models"][model]
        ax.set_title(f"{model}: {100 * m['mean_set_disagreement']:.0f}% of sets disagree", fontsize=9)
        ax.set_xlabel("patients (sorted)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("P(true class) over image sets")
    handles = [
        Line2D([], [], marker="o", ls="", color=colour, label=label) for colour, label in REPEATABILITY_COLOURS.items()
    ]
    handles += [
        Line2D([], [], color="grey", lw=0.8, label="mean ± std over image sets"),
        Line2D([], [], color="grey", lw=0.6, ls="--", label="P = 0.5"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    return save_figure(fig, Path(path))
