"""Self-supervised pre-training: every method runs, saves a usable encoder, resumes after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from smearmil.data import load_cohort
from smearmil.data.cache import build_cache
from smearmil.data.images import Preprocessing
from smearmil.models.cell_encoder import CellEncoder
from smearmil.models.specs import EncoderConfig
from smearmil.training.config.ssl import load_ssl_config
from smearmil.training.ssl import SSL_METHODS
from smearmil.training.ssl.dino import DINO
from smearmil.training.ssl.pretrain import CellSource, pretrain
from smearmil.training.ssl.swav import SwAV

TINY = {"image": {"size": 32, "crop": None}, "encoder": {"k": 4}, "epochs": 1, "batch_size": 16, "warmup_epochs": 0}


@pytest.mark.parametrize("method", SSL_METHODS.names())
def test_each_method_pretrains_and_saves_an_encoder_that_reloads(sim_cohort: Path, tmp_path: Path, method: str) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    cache = build_cache(cohort, Preprocessing(32), tmp_path / "k", progress=False)
    seen = cohort.ids[:8]
    extra = {"queue_length": 32, "queue_start_epoch": 0} if method == "swav" else {}
    config = load_ssl_config("cpu-ssl", {**TINY, "method": {"name": method, **extra}})
    encoder = pretrain([CellSource(cache, seen, "sim")], config, tmp_path / "run", progress=False)
    meta = json.loads((tmp_path / "run" / "encoder.json").read_text())
    assert meta["method"] == method and meta["sources"][0]["patients"] == sorted(seen)
    assert np.isfinite(meta["final_loss"])
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    cells = cache.bag(cohort.ids[0])
    again = CellEncoder.load(tmp_path / "run")
    np.testing.assert_allclose(again.embed(cells), encoder.embed(cells), rtol=1e-5, atol=1e-5)
    assert again.embed(cells).shape == (len(cells), 8 * 4)


def test_swav_queue_fills_and_dino_teacher_follows_the_student() -> None:
    config = load_ssl_config("cpu-ssl-swav", {**TINY, "method": {"name": "swav", "queue_length": 8}})
    encoder = CellEncoder.random(EncoderConfig(k=4), Preprocessing(32)).encoder.train()
    swav = config.build_method(encoder)
    assert isinstance(swav, SwAV)
    views = [torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32), torch.randn(6, 3, 16, 16)]
    swav.training_loss(views, epoch=0)
    assert int(swav.queue_filled) == 8 and swav.queue.abs().sum() > 0
    dino = DINO(
        CellEncoder.random(EncoderConfig(k=4), Preprocessing(32)).encoder.train(),
        load_ssl_config("cpu-ssl-dino").method.params,
    )
    with torch.no_grad():
        for p in dino.encoder.parameters():
            p.add_(1.0)
    before = [t.clone() for t in dino.teacher_encoder.parameters()]
    dino.after_step(0.0)  # momentum 0.996: the teacher moves 0.4% of the way
    for b, t, s in zip(before, dino.teacher_encoder.parameters(), dino.encoder.parameters()):
        torch.testing.assert_close(t, 0.996 * b + 0.004 * s)


@pytest.mark.slow
def test_killed_pretraining_resumes_from_its_last_checkpoint(sim_cohort: Path, tmp_path: Path) -> None:
    config = tmp_path / "slow.yaml"
    config.write_text(
        "kind: ssl\nbase: cpu-ssl\nimage: {size: 32, crop: null}\nencoder: {k: 8}\nepochs: 8\nbatch_size: 16\n"
    )
    run = tmp_path / "run"
    exe = Path(sys.executable).with_name("smearmil")
    command = [
        str(exe),
        "ssl",
        "pretrain",
        str(sim_cohort),
        "--config",
        str(config),
        "--out",
        str(run),
        "--cache-dir",
        str(tmp_path / "k"),
        "-q",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "encoder.json").exists(), "pre-training finished before it could be killed"
    epoch_at_kill = torch.load(last, weights_only=True)["epoch"]
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    meta = json.loads((run / "encoder.json").read_text())
    assert meta["resumed_from_epoch"] == epoch_at_kill + 1
    logged = [int(r["epoch"]) for r in csv.DictReader((run / "logs" / "metrics.csv").open()) if r["train/loss"]]
    assert sorted(logged) == list(range(8)), "every epoch is logged exactly once across the two sessions"


def test_a_wrong_config_kind_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a pre-training config"):
        load_ssl_config("cpu-cnn")
    with pytest.raises(ValueError, match="pre-training config"):
        from smearmil.training.config import load_config

        load_config("cpu-ssl")


def test_synchronised_batch_norm_on_cpu_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from smearmil.training.ssl.pretrain import pretrain

    config = load_ssl_config("cpu-ssl", {"sync_batchnorm": True, "accelerator": "cpu"})
    with pytest.raises(ValueError, match="sync_batchnorm needs GPUs"):
        pretrain([], config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_mil_model_can_start_from_a_pretrained_encoder_and_fine_tune_it(sim_cohort: Path, tmp_path: Path) -> None:
    from smearmil.data.splits import make_splits
    from smearmil.models.experts import build_cnn, initialised
    from smearmil.models.kinds import ModelDims
    from smearmil.training.config import load_config
    from smearmil.training.fit import train_fold

    cohort = load_cohort(sim_cohort, progress=False)
    cache = build_cache(cohort, Preprocessing(32), tmp_path / "k", progress=False)
    pretrain(
        [CellSource(cache, cohort.ids[:8], "sim")], load_ssl_config("cpu-ssl", TINY), tmp_path / "ssl", progress=False
    )
    saved = torch.load(tmp_path / "ssl" / "encoder.pt", weights_only=True)
    overrides = {
        "image": {"size": 32, "crop": None},
        "model": {"encoder": {"k": 4, "init": str(tmp_path / "ssl")}},
        "train": {"epochs": 1, "bags_per_batch": 4},
    }
    config = load_config("cpu-attention", overrides)
    fold = make_splits(cohort, "kfold", folds=3, val=0.0, seed=0).folds[0]
    trained = train_fold(cohort, fold, config, tmp_path / "mil", cache, progress=False)
    tuned = trained.model.encoder.state_dict()  # type: ignore[union-attr]
    assert tuned.keys() == saved.keys()
    changed = [k for k in saved if saved[k].is_floating_point() and not torch.equal(saved[k], tuned[k])]
    assert changed, "fine-tuning left the pre-trained weights untouched"
    first_conv = next(k for k in saved if k.endswith("weight"))
    assert torch.corrcoef(torch.stack([saved[first_conv].flatten(), tuned[first_conv].flatten()]))[0, 1] > 0.9
    wrong = load_config("cpu-attention", {**overrides, "model": {"encoder": {"k": 8, "init": str(tmp_path / "ssl")}}})
    dims = ModelDims(2, 0, 32)
    with pytest.raises(ValueError, match="set model.encoder to the same"):
        initialised(build_cnn(wrong.model, dims), wrong.model)
    empty = load_config("cpu-attention", {**overrides, "model": {"encoder": {"k": 4, "init": str(tmp_path)}}})
    with pytest.raises(FileNotFoundError, match="model.encoder.init: .*ssl pretrain"):
        initialised(build_cnn(empty.model, dims), empty.model)
