"""Several processes (gloo on CPU): SSL losses equal their one-process values on the concatenated batch,
and supervised and self-supervised runs under DDP cover every patient once."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from smearmil.training.ssl.losses import DINOLoss, NTXentLoss, SwAVLoss, sinkhorn
from smearmil.training.ssl.swav import SwAV, SwAVParams
from smearmil.utils.distributed import all_reduce_sum, gather_objects, sharded

WORLD, B, DIM, PROTOTYPES = 2, 6, 8, 5


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(DIM, DIM)
    return {
        "x1": torch.randn(WORLD * B, DIM, generator=g),
        "x2": torch.randn(WORLD * B, DIM, generator=g),
        "scores": [torch.randn(WORLD * B, PROTOTYPES, generator=g) * 3 for _ in range(3)],
        "teacher": torch.randn(WORLD * B, DIM, generator=g),
        "center": torch.randn(1, DIM, generator=g),
        "layer": layer.state_dict(),
    }


class _Encoder(nn.Linear):
    out_dim = DIM

    def __init__(self) -> None:
        super().__init__(DIM, DIM)


def _computed(data: dict, rows: slice) -> dict[str, torch.Tensor]:
    """The losses on ``rows`` of the batch; with several processes, their gradient as DDP averages it."""
    layer = nn.Linear(DIM, DIM)
    layer.load_state_dict(data["layer"])
    simclr = NTXentLoss(0.2)(layer(data["x1"][rows]), layer(data["x2"][rows]))
    simclr.backward()
    world = dist.get_world_size() if dist.is_initialized() else 1
    dino = DINOLoss(DIM)
    dino.center.copy_(data["center"])
    dino.update_center(data["teacher"][rows])
    scores = [s[rows] for s in data["scores"]]
    torch.manual_seed(0)  # the same SwAV weights in every process; its queue holds 2 steps of 2 views
    params = SwAVParams(queue_length=2 * WORLD * B, queue_start_epoch=0, prototypes=PROTOTYPES, hidden=8)
    swav = SwAV(_Encoder(), params).eval()  # eval: batch norm (per process under DDP) out of the comparison
    views = [data["x1"][rows], data["x2"][rows]]
    swav.training_loss(views, epoch=0)
    swav.training_loss([v * 0.5 + 1 for v in views], epoch=0)
    with_queue = swav.training_loss(views, epoch=1)
    return {
        "swav_queue": swav.queue.clone(),
        "swav_with_queue": all_reduce_sum(with_queue.detach()) / world,
        "simclr": all_reduce_sum(simclr) / world,
        "simclr_grad": all_reduce_sum(layer.weight.grad) / world,
        "codes": sinkhorn(scores[0]),
        "swav": all_reduce_sum(SwAVLoss()(scores, n_global=2)) / world,
        "center": dino.center.clone(),
        "gathered": torch.tensor(sharded(lambda ids: [i * 10 for i in ids], list(range(7)), key=lambda v: v // 10)),
        "objects": torch.tensor(gather_objects(dist.get_rank() if dist.is_initialized() else 0)),
    }


def _process(rank: int, init: str, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        data = torch.load(Path(folder) / "inputs.pt", weights_only=True)
        torch.save(_computed(data, slice(rank * B, (rank + 1) * B)), Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ssl_losses_with_two_processes_equal_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    data = _inputs()
    torch.save(data, tmp_path / "inputs.pt")
    mp.start_processes(
        _process, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=WORLD, start_method="spawn"
    )
    alone = _computed(data, slice(0, WORLD * B))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for found in ranks:
        # the mean of the processes' losses, and DDP's mean of their gradients, are the whole batch's
        assert torch.allclose(found["simclr"], alone["simclr"], atol=1e-5)
        assert torch.allclose(found["simclr_grad"], alone["simclr_grad"], atol=1e-5)
        assert torch.allclose(found["swav"], alone["swav"], atol=1e-5)
        # SwAV's queue: every process holds the queue one process would, and the loss with it matches
        assert torch.allclose(found["swav_queue"], alone["swav_queue"], atol=1e-6)
        assert torch.allclose(found["swav_with_queue"], alone["swav_with_queue"], atol=1e-5)
        assert torch.allclose(found["center"], alone["center"], atol=1e-6)  # every process: the same centre
        assert found["gathered"].tolist() == [i * 10 for i in range(7)]  # each item once, in order
        assert found["objects"].tolist() == [0, 1]
    codes = torch.cat([r["codes"] for r in ranks])  # each process: the codes of its rows
    assert torch.allclose(codes, alone["codes"], atol=1e-5)
    # the check has something to catch: one process's half alone gives other codes, loss and centre
    half = _computed(data, slice(0, B))
    assert not torch.allclose(half["codes"], alone["codes"][:B], atol=1e-3)
    assert not torch.allclose(half["simclr"], alone["simclr"], atol=1e-3)
    assert not torch.allclose(half["center"], alone["center"], atol=1e-3)


def test_helpers_are_identities_in_one_process() -> None:
    assert sharded(lambda ids: [i + 1 for i in ids], [3, 1, 2], key=lambda v: v - 1) == [4, 2, 3]
    assert gather_objects("x") == ["x"]


TWO_PROCESSES = ("--accelerator", "cpu", "--devices", 2, "--strategy", "ddp", "--cache-dir", "cache")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


def _run(*args: object, cwd: Path) -> None:
    """The command line in processes of its own, as a user runs it (Lightning's launcher re-runs it)."""
    command = [sys.executable, "-m", "smearmil", *map(str, args), "--quiet"]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_cv_on_two_processes_covers_every_patient_once(sim_cohort: Path, tmp_path: Path) -> None:
    common = ("--config", "cpu-cnn", "--folds", 4, "--epochs", 2, "--out", "cv", *TWO_PROCESSES)
    _run("cv", sim_cohort, *common, cwd=tmp_path)
    predicted = _csv_rows(tmp_path / "cv" / "predictions.csv")
    patients = sorted(p.name for p in (sim_cohort / "trainset").iterdir() if p.is_dir())
    assert sorted(r["patient"] for r in predicted) == patients  # test folds of 3: shares of 2 and 1
    summary = json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert sum(f["n_test"] for f in summary["folds"]) == len(patients)
    splits = json.loads((tmp_path / "cv" / "splits.json").read_text())
    for fold in splits["folds"]:  # validation metrics: every validation patient, from both processes
        rows = _csv_rows(tmp_path / "cv" / fold["name"] / "cnn" / "logs" / "metrics.csv")
        seen = [float(r["val/patients"]) for r in rows if r.get("val/patients")]
        assert seen and all(n == len(fold["val"]) for n in seen)
        losses = [float(r["val/loss"]) for r in rows if r.get("val/loss")]  # over the unique patients
        assert len(losses) == len(seen) and all(math.isfinite(v) and v > 0 for v in losses)
        assert len(fold["val"]) > 1


def test_ssl_pretraining_on_two_processes_shares_the_batches(sim_cohort: Path, tmp_path: Path) -> None:
    common = ("--config", "cpu-ssl", "--epochs", 2, "--set", "batch_size=8", "--out", "ssl", *TWO_PROCESSES)
    _run("ssl", "pretrain", sim_cohort, *common, cwd=tmp_path)
    meta = json.loads((tmp_path / "ssl" / "encoder.json").read_text())
    cells = meta["sources"][0]["cells"]
    rows = _csv_rows(tmp_path / "ssl" / "logs" / "metrics.csv")
    steps_per_epoch = cells // 8 // 2  # each process takes half of the epoch's batches
    assert [int(r["step"]) for r in rows] == [steps_per_epoch - 1, 2 * steps_per_epoch - 1]
    assert all(math.isfinite(float(r["train/loss"])) for r in rows)
    assert (tmp_path / "ssl" / "encoder.pt").is_file()


def test_feature_extraction_on_two_processes_writes_the_one_process_store(sim_cohort: Path, tmp_path: Path) -> None:
    common = ("--encoder", "random:cpu-ssl", "--cache-dir", "cache")
    _run("features", "extract", sim_cohort, *common, "--out", "one", cwd=tmp_path)
    _run("features", "extract", sim_cohort, *common, "--out", "two", *TWO_PROCESSES[:-2], cwd=tmp_path)
    one, two = (json.loads((tmp_path / d / "index.json").read_text()) for d in ("one", "two"))
    assert two["patients"] == one["patients"] and len(one["patients"]) == 12  # rows, cells, labels: same order
    a, b = (np.load(tmp_path / d / "features.npy") for d in ("one", "two"))
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("n", [1, 5, 6])
def test_shares_of_bags_cover_every_bag_and_have_one_length(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 2 processes, every bag is in a share, and shares are equally long even with fewer bags than
    processes (a process without a validation bag would stall the others)."""
    from smearmil.training import data

    monkeypatch.setattr(data, "world_size", lambda: 2)
    for make in (lambda: data.ShardSampler(n), lambda: data.EpochSampler(n, seed=0)):
        shares = []
        for r in (0, 1):
            monkeypatch.setattr(data, "rank", lambda r=r: r)
            sampler = make()
            shares.append([i if isinstance(i, int) else i[0] for i in sampler])
            assert len(shares[-1]) == len(sampler) == -(-n // 2)
        assert sorted(set(shares[0]) | set(shares[1])) == list(range(n))


def test_a_process_other_than_the_main_one_waits_for_its_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under SLURM every task starts at once: the others touch the run folder only once process 0 claimed it."""
    from smearmil.utils import outputs

    monkeypatch.setattr(outputs, "is_main_process", lambda: False)
    folder = tmp_path / "run"
    claim = threading.Timer(0.3, lambda: outputs._claim(folder, "train", {}, False, "test", {}))
    claim.start()
    assert outputs.claim_output(folder, "train", {}) == "resume"
    claim.join()
    # the other process wrote nothing: the marker and the main process's lock are all there is
    assert sorted(p.name for p in folder.iterdir()) == sorted([outputs.MARKER, outputs.LOCK])
    with pytest.raises(outputs.OutputRefused, match="has not claimed it"):
        outputs._wait_for_marker(tmp_path / "never", timeout=0.2)


def test_auto_precision_is_float32_off_the_gpu() -> None:
    from smearmil.training.trainer import resolve_precision

    assert resolve_precision("auto", "cpu") == "32-true" and resolve_precision("auto", "mps") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
