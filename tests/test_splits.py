"""Splits are by patient: no patient in two sets, class ratios within one patient, same seed same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smearmil.data import DataError, load_cohort
from smearmil.data.splits import SplitPlan, holdout_ids, kfold_ids, make_splits

labels_strategy = st.lists(st.integers(0, 3), min_size=2, max_size=120)


def _ids(labels: list[int]) -> list[str]:
    return [f"p{i}" for i in range(len(labels))]


def _count(ids: set[str] | tuple[str, ...], label_of: dict[str, int], c: int) -> int:
    return sum(label_of[i] == c for i in ids)


@settings(max_examples=150, deadline=None)
@given(
    labels=labels_strategy,
    weights=st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(1, 10)),
    seed=st.integers(0, 2**31),
)
def test_holdout_disjoint_complete_and_stratified(labels: list[int], weights: tuple[int, int, int], seed: int) -> None:
    fractions = [w / sum(weights) for w in weights]
    ids = _ids(labels)
    label_of = dict(zip(ids, labels))
    sets = holdout_ids(ids, labels, fractions, seed)
    assert sorted(i for s in sets for i in s) == sorted(ids)
    assert sum(len(s) for s in sets) == len(ids)  # disjoint
    for c in set(labels):
        n_c = labels.count(c)
        for s, f in zip(sets, fractions):
            assert abs(_count(set(s), label_of, c) - n_c * f) < 1.0


@settings(max_examples=150, deadline=None)
@given(
    labels=labels_strategy, k=st.integers(2, 10), val=st.sampled_from([0.0, 0.1, 0.2, 0.3]), seed=st.integers(0, 2**31)
)
def test_kfold_folds_partition_patients_and_never_leak(labels: list[int], k: int, val: float, seed: int) -> None:
    if k > len(labels):
        with pytest.raises(ValueError):
            kfold_ids(_ids(labels), labels, k, seed)
        return
    ids = _ids(labels)
    label_of = dict(zip(ids, labels))
    folds = kfold_ids(ids, labels, k, seed)
    assert sorted(i for f in folds for i in f) == sorted(ids)
    for c in set(labels):
        for f in folds:
            assert abs(_count(set(f), label_of, c) - labels.count(c) / k) < 1.0

    from smearmil.data.splits import kfold_folds

    for fold in kfold_folds(ids, labels, k, val, seed, "f"):
        train, valid, test = set(fold.train), set(fold.val), set(fold.test)
        assert not (train & valid or train & test or valid & test)
        assert train | valid | test == set(ids)
        for c in set(labels):
            n_rest = _count(train | valid, label_of, c)
            assert abs(_count(valid, label_of, c) - n_rest * val) < 1.0


def test_same_seed_same_bytes_and_round_trip(lymph_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(lymph_cohort, progress=False)
    for scheme in ("holdout", "kfold", "repeated-kfold"):
        a, b = tmp_path / f"{scheme}-a.json", tmp_path / f"{scheme}-b.json"
        make_splits(cohort, scheme, folds=2, repeats=2, val=0.0, test=0.5, seed=11).save(a)
        make_splits(cohort, scheme, folds=2, repeats=2, val=0.0, test=0.5, seed=11).save(b)
        assert a.read_bytes() == b.read_bytes()
        plan = SplitPlan.load(a)
        assert plan.to_json() == make_splits(cohort, scheme, folds=2, repeats=2, val=0.0, test=0.5, seed=11).to_json()
        plan.check_cohort(cohort)
    assert len(SplitPlan.load(tmp_path / "repeated-kfold-a.json").folds) == 4


def test_different_seeds_give_different_folds(sim_cohort: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    assert make_splits(cohort, "kfold", folds=3, seed=1).folds != make_splits(cohort, "kfold", folds=3, seed=2).folds


def test_a_leaky_or_foreign_splits_file_is_refused(lymph_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(lymph_cohort, progress=False)
    path = tmp_path / "s.json"
    make_splits(cohort, "holdout", val=0.25, test=0.25, seed=0).save(path)
    text = path.read_text()
    plan = SplitPlan.load(path)
    leaked = text.replace(f'"{plan.folds[0].test[0]}"', f'"{plan.folds[0].train[0]}"', 1)
    path.write_text(leaked)
    with pytest.raises(DataError, match="both"):
        SplitPlan.load(path)
    path.write_text(text.replace('"P1"', '"P99"'))
    with pytest.raises(DataError, match="not in the cohort"):
        SplitPlan.load(path).check_cohort(cohort)
