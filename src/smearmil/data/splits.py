"""Patient-level splits: stratified hold-out, k-fold with an inner validation split, repeated k-fold.

Patients, never cells, are assigned, so no patient can sit in two of train, validation and test.
Per class, each set gets the count closest to its share (largest remainder), so class ratios hold
within one patient per class. A plan is written to and read back from canonical JSON, so the same
seed gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..utils.atomic import dumps_json, write_text
from ..utils.outputs import OutputRefused
from ..utils.paths import fold_name
from .cohort import Cohort
from .problems import DataError, Problem

Scheme = Literal["holdout", "kfold", "repeated-kfold"]
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Fold:
    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def sets(self) -> dict[str, tuple[str, ...]]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass
class SplitPlan:
    scheme: str
    seed: int
    params: dict[str, Any]
    folds: list[Fold]
    cohort: str = ""  # fingerprint of the cohort the plan was made for
    unlabelled: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "scheme": self.scheme,
            "seed": self.seed,
            "params": self.params,
            "cohort": self.cohort,
            "unlabelled": sorted(self.unlabelled),
            "folds": [{"name": f.name, **{k: sorted(v) for k, v in f.sets().items()}} for f in self.folds],
        }

    def save(self, path: str | Path) -> None:
        write_text(path, dumps_json(self.to_json()))

    def save_new(self, path: str | Path, overwrite: bool = False) -> None:
        """``save``, refusing to replace a file that is not a splits file, or another plan without ``overwrite``."""
        path = Path(path)
        if path.exists():
            try:
                same = SplitPlan.load(path).to_json() == self.to_json()
            except DataError:
                raise OutputRefused(
                    f"{path} exists and is not a smearmil splits file; it is left untouched: choose another --out"
                ) from None
            if not same and not overwrite:
                raise OutputRefused(f"{path} holds other splits; pass --overwrite to replace it")
        self.save(path)

    @classmethod
    def load(cls, path: str | Path) -> SplitPlan:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            folds = [
                Fold(fold_name(str(f["name"])), tuple(f["train"]), tuple(f["val"]), tuple(f["test"]))
                for f in raw["folds"]
            ]
            plan = cls(
                raw["scheme"],
                int(raw["seed"]),
                dict(raw["params"]),
                folds,
                raw.get("cohort", ""),
                list(raw.get("unlabelled", [])),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(
                [Problem("bad_splits", str(path), f"not a smearmil splits file ({error}); recreate it")]
            ) from error
        plan.check_disjoint(str(path))
        return plan

    def check_training_classes(self, cohort: Cohort, where: str = "splits") -> None:
        """The cohort must have two classes or more, each with patients in every fold's training set; else
        DataError."""
        present = {p.label for p in cohort.labelled()}
        if len(present) < 2:
            only = ", ".join(repr(c) for c in sorted(c for c in present if c is not None)) or "none"
            raise DataError(
                [
                    Problem(
                        "one_class",
                        str(cohort.root),
                        f"the labelled patients' classes: {only}; a classifier needs patients of at least two classes",
                    )
                ]
            )
        problems = []
        for fold in self.folds:
            seen = {cohort[i].label for i in fold.train if i in cohort}
            for label in sorted(c for c in present - seen if c is not None):
                n = sum(p.label == label for p in cohort.labelled())
                problems.append(
                    Problem(
                        "class_missing_from_training",
                        f"{where} fold {fold.name}",
                        f"no training patient of class {label!r} ({n} in the cohort); add patients "
                        "of that class, or use fewer folds or a smaller validation share",
                    )
                )
        if problems:
            raise DataError(problems)

    def fold(self, name: str | None = None) -> Fold:
        """The fold called ``name`` (default: the first)."""
        if name is None:
            return self.folds[0]
        for fold in self.folds:
            if fold.name == name:
                return fold
        raise ValueError(f"no fold {name!r} in the splits; folds: {', '.join(f.name for f in self.folds)}")

    def check_disjoint(self, where: str = "splits") -> None:
        problems = []
        names = [f.name for f in self.folds]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(
                Problem(
                    "duplicate_fold",
                    f"{where} fold {name}",
                    f"{names.count(name)} folds share this "
                    "name (and would share one folder); give each fold its own name",
                )
            )
        for fold in self.folds:
            sets = fold.sets()
            for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
                shared = sorted(set(sets[a]) & set(sets[b]))
                if shared:
                    problems.append(
                        Problem(
                            "leaky_split",
                            f"{where} fold {fold.name}",
                            f"patients {shared[:5]} are in both {a} and {b}; recreate the splits",
                        )
                    )
        if problems:
            raise DataError(problems)

    def check_cohort(self, cohort: Cohort, where: str = "splits") -> None:
        """Raise DataError if the plan names patients the cohort does not have."""
        unknown = sorted({i for f in self.folds for s in f.sets().values() for i in s} - set(cohort.ids))
        if unknown:
            raise DataError(
                [
                    Problem(
                        "unknown_patients",
                        where,
                        f"{len(unknown)} patient(s) not in the cohort, e.g. {unknown[:5]}; recreate the splits",
                    )
                ]
            )


def _largest_remainder(n: int, fractions: Sequence[float], rng: np.random.Generator) -> list[int]:
    """Integer counts summing to ``n``, each within one of ``n * fraction`` (ties broken at random)."""
    exact = np.asarray(fractions, dtype=np.float64) * n
    counts = np.floor(exact).astype(int)
    remainder = exact - counts
    order = sorted(range(len(fractions)), key=lambda j: (-round(remainder[j], 12), rng.random()))
    for j in order[: n - counts.sum()]:
        counts[j] += 1
    return counts.tolist()


def _by_class(ids: Sequence[str], labels: Sequence[int], rng: np.random.Generator) -> list[list[str]]:
    """Ids grouped by class, each group shuffled (from a sorted order, so input order does not matter)."""
    groups = []
    for c in sorted(set(labels)):
        members = sorted(i for i, y in zip(ids, labels) if y == c)
        groups.append([members[j] for j in rng.permutation(len(members))])
    return groups


def _labelled(cohort: Cohort) -> tuple[list[str], list[int], list[str]]:
    ids = [p.id for p in cohort.labelled()]
    labels = [cohort.label_index(p) for p in cohort.labelled()]
    unlabelled = [p.id for p in cohort.patients if p.label is None]
    if len(ids) < 2:
        raise DataError(
            [Problem("too_few_patients", str(cohort.root), f"{len(ids)} labelled patient(s); a split needs at least 2")]
        )
    if len(set(labels)) < 2:
        only = cohort.class_names[labels[0]]
        raise DataError(
            [
                Problem(
                    "one_class",
                    str(cohort.root),
                    f"every labelled patient is {only!r}; a classifier needs patients of at least two classes",
                )
            ]
        )
    return ids, labels, unlabelled


def holdout_ids(
    ids: Sequence[str], labels: Sequence[int], fractions: Sequence[float], seed: int
) -> tuple[list[str], ...]:
    """Stratified split of ``ids`` into ``len(fractions)`` sets."""
    if any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    sets: list[list[str]] = [[] for _ in fractions]
    for group in _by_class(ids, labels, rng):
        start = 0
        for s, count in zip(sets, _largest_remainder(len(group), fractions, rng)):
            s.extend(group[start : start + count])
            start += count
    return tuple(sorted(s) for s in sets)


def kfold_ids(ids: Sequence[str], labels: Sequence[int], k: int, seed: int) -> list[list[str]]:
    """Stratified k-fold: fold sizes per class differ by at most one."""
    if not 2 <= k <= len(ids):
        raise ValueError(f"folds must be between 2 and the number of patients ({len(ids)}), got {k}")
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for group in _by_class(ids, labels, rng):
        for j, pid in enumerate(group):
            folds[(offset + j) % k].append(pid)
        offset = (offset + len(group)) % k
    return [sorted(f) for f in folds]


def holdout(cohort: Cohort, train: float = 0.7, val: float = 0.1, test: float = 0.2, seed: int = 0) -> SplitPlan:
    ids, labels, unlabelled = _labelled(cohort)
    tr, va, te = holdout_ids(ids, labels, (train, val, test), seed)
    params = {"train": train, "val": val, "test": test}
    return SplitPlan(
        "holdout", seed, params, [Fold("holdout", tuple(tr), tuple(va), tuple(te))], cohort.fingerprint(), unlabelled
    )


def all_labelled(cohort: Cohort, val: float = 0.15, seed: int = 0) -> SplitPlan:
    """One fold ``all`` for a final model: every labelled patient trains, ``val`` of them (stratified) for
    early stopping and model choice; no test patients (judge the settings by CV first)."""
    ids, labels, unlabelled = _labelled(cohort)
    tr, va = holdout_ids(ids, labels, (1.0 - val, val), seed)
    params = {"train": 1.0 - val, "val": val, "test": 0.0}
    return SplitPlan("all", seed, params, [Fold("all", tuple(tr), tuple(va), ())], cohort.fingerprint(), unlabelled)


def kfold_folds(ids: list[str], labels: list[int], k: int, val: float, seed: int, prefix: str) -> list[Fold]:
    label_of = dict(zip(ids, labels))
    folds = []
    for i, test in enumerate(kfold_ids(ids, labels, k, seed)):
        held_out = set(test)
        rest = [pid for pid in ids if pid not in held_out]
        tr, va = holdout_ids(rest, [label_of[p] for p in rest], (1 - val, val), seed * 1009 + i + 1)
        folds.append(Fold(f"{prefix}{i}", tuple(tr), tuple(va), tuple(test)))
    return folds


def kfold(cohort: Cohort, folds: int = 5, val: float = 0.15, seed: int = 0) -> SplitPlan:
    """Stratified k-fold; each fold's training patients give up ``val`` of themselves for validation."""
    ids, labels, unlabelled = _labelled(cohort)
    plan = kfold_folds(ids, labels, folds, val, seed, "fold")
    return SplitPlan("kfold", seed, {"folds": folds, "val": val}, plan, cohort.fingerprint(), unlabelled)


def repeated_kfold(cohort: Cohort, folds: int = 5, repeats: int = 3, val: float = 0.15, seed: int = 0) -> SplitPlan:
    ids, labels, unlabelled = _labelled(cohort)
    seeds = np.random.SeedSequence(seed).generate_state(repeats).tolist()
    plan = [f for r, s in enumerate(seeds) for f in kfold_folds(ids, labels, folds, val, int(s), f"r{r}-fold")]
    params = {"folds": folds, "repeats": repeats, "val": val}
    return SplitPlan("repeated-kfold", seed, params, plan, cohort.fingerprint(), unlabelled)


def make_splits(
    cohort: Cohort,
    scheme: Scheme = "kfold",
    *,
    folds: int = 5,
    repeats: int = 3,
    val: float = 0.15,
    test: float = 0.2,
    seed: int = 0,
) -> SplitPlan:
    """One entry point for every scheme (what the CLI and configs call)."""
    if scheme == "holdout":
        return holdout(cohort, 1.0 - val - test, val, test, seed)
    if scheme == "kfold":
        return kfold(cohort, folds, val, seed)
    if scheme == "repeated-kfold":
        return repeated_kfold(cohort, folds, repeats, val, seed)
    raise ValueError(f"unknown split scheme {scheme!r}; use holdout, kfold or repeated-kfold")
