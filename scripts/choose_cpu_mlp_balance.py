"""cpu-mlp's class balancing chosen inside the training patients of each outer fold (3-fold inner CV),
over seeds 0,1,2 of 5-fold CV on lymphocytosis-dev; the outer folds judge the choice, with naive Bayes on
the same folds and the same attribute encoding."""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from smearmil.baselines.clinical import CLINICAL
from smearmil.data import load_cohort
from smearmil.data.splits import kfold_folds, make_splits
from smearmil.protocols.cv import fit_and_test
from smearmil.training.config import load_config
from smearmil.training.fit import train_fold
from smearmil.training.methods import FitSettings
from smearmil.training.methods.run import RunMethod
from smearmil.utils.scoring import scores

cohort = load_cohort(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/lymphocytosis-dev")
label = {p.id: cohort.label_index(p) for p in cohort.labelled()}
CANDIDATES = ("none", "weights")
work = Path(tempfile.mkdtemp(prefix="mlpsel-"))
rows, start = [], time.perf_counter()


def ba(ids, probs):
    y = np.array([label[i] for i in ids])
    return scores(y, np.array(probs))["balanced_accuracy"]


for seed in (0, 1, 2):
    outer = make_splits(cohort, "kfold", folds=5, seed=seed)
    for fold in outer.folds:
        inside = list(fold.train) + list(fold.val)
        inner = kfold_folds(inside, [label[i] for i in inside], 3, 0.15, seed, "inner")
        inner_ba = {}
        for balance in CANDIDATES:
            config = load_config("cpu-mlp", {"train": {"balance": balance}, "seed": seed})
            ids, probs = [], []
            for f in inner:
                folder = work / f"s{seed}-{fold.name}-{balance}-{f.name}"
                out, _ = fit_and_test(RunMethod(config), cohort, f, folder, FitSettings(seed, progress=False))
                ids += [p.id for p in out.predictions]
                probs += [p.proba for p in out.predictions]
            inner_ba[balance] = ba(ids, probs)
        chosen = max(CANDIDATES, key=lambda b: (inner_ba[b], b == "none"))  # tie: the simpler, no weighting
        config = load_config("cpu-mlp", {"train": {"balance": chosen}, "seed": seed})
        trained = train_fold(cohort, fold, config, work / f"s{seed}-{fold.name}-outer", None, False)
        test = list(fold.test)
        mlp = [p.proba for p in trained.predict_cohort(cohort, test, None)]
        x_train = trained.encoder.transform(cohort, list(fold.train) + list(fold.val))
        nb = CLINICAL["gnb"](seed).fit(x_train, [label[i] for i in list(fold.train) + list(fold.val)])
        rows.append(
            {
                "seed": seed,
                "fold": fold.name,
                "inner": inner_ba,
                "chosen": chosen,
                "test": test,
                "mlp": [list(map(float, p)) for p in mlp],
                "nb": nb.predict_proba(trained.encoder.transform(cohort, test)).tolist(),
            }
        )
        print(seed, fold.name, {k: round(v, 3) for k, v in inner_ba.items()}, "->", chosen, flush=True)
        json.dump(rows, open("cpu-mlp-balance.json", "w"))

summary = {}
for seed in (0, 1, 2):
    r = [x for x in rows if x["seed"] == seed]
    ids = [i for x in r for i in x["test"]]
    y = np.array([label[i] for i in ids])
    for name in ("mlp", "nb"):
        found = scores(y, np.array([p for x in r for p in x[name]]))
        summary.setdefault(name, []).append((found["balanced_accuracy"], found["roc_auc"]))
print("choices:", {b: sum(x["chosen"] == b for x in rows) for b in CANDIDATES})
for name, v in summary.items():
    v = np.array(v)
    print(
        name,
        "pooled per seed BA",
        v[:, 0].round(3).tolist(),
        "mean",
        v[:, 0].mean().round(3),
        "AUC",
        v[:, 1].round(3).tolist(),
        "mean",
        v[:, 1].mean().round(3),
    )
print("wall", round(time.perf_counter() - start), "s")
json.dump(rows, open("cpu-mlp-balance.json", "w"))
