"""The speed benchmarks run and report consistent figures (speed targets are checked by the commands)."""

from __future__ import annotations

from pathlib import Path

from smearmil.bench.predict import bench_shape as predict_shape
from smearmil.bench.predict import count_gflop
from smearmil.bench.train import bench_shape as train_shape


def test_bench_predict_and_train_measure_what_they_say() -> None:
    shape = predict_shape("cpu-cnn", "cpu-cnn", {}, cells=4, repeats=1)
    assert shape.gflop > 0 and min(shape.plain_seconds, shape.fast_seconds, shape.jpeg_seconds) > 0
    step = train_shape("cpu-cnn", "cpu-cnn", {}, bags=2, repeats=1)
    assert 32 <= step.cells <= 400 and step.gflop > shape.gflop / 4 * 32  # forward and backward of every cell
    assert step.several_vs_one > 0 and step.gflops > 0
    import torch

    a = torch.randn(64, 32)
    assert count_gflop(lambda: a @ a.T) == 2 * 64 * 64 * 32 / 1e9  # the counter counts multiply-adds twice


def test_the_data_wait_is_a_share_of_one_epoch_of_the_real_loader() -> None:
    from smearmil.bench.train import data_wait

    found = data_wait("cpu-cnn", bags=6)
    assert found.steps == 2  # 6 bags, 4 a step (the preset): two batches, each bag once
    assert 0 < found.wait_seconds < found.total_seconds and 0 < found.share < 1


def test_the_step_breakdown_puts_the_time_where_the_work_is() -> None:
    from smearmil.bench.predict import matmul_peak
    from smearmil.bench.train import KERNELS, step_breakdown, training_step

    found = step_breakdown("cpu-cnn", {}, [16, 20], channels_last=False, steps=2)
    parts = found.seconds
    assert set(parts) == {*KERNELS, "augmentation", "optimiser", "other"}
    assert all(parts[p] > 0 for p in (*KERNELS, "augmentation", "optimiser"))  # cpu-cnn has every kind of work
    # the named parts are self times of distinct operators: together no more than the step (no double count)
    assert sum(v for p, v in parts.items() if p != "other") <= 1.05 * found.step_seconds
    step = training_step("cpu-cnn", {}, [16, 20])
    total = count_gflop(lambda: step([0, 1]))
    assert 0.9 * total < found.convolution_gflop < total  # nearly all of a CNN's FLOPs, not the linear layers'
    # time wrongly left out of the convolutions would show as a speed above what the machine can do
    assert 0 < found.convolution_gflops < 1.5 * matmul_peak((1536,), repeats=3)


def test_bench_demo_loads_every_core_and_compares_figures_not_times(tmp_path: Path) -> None:
    import json
    import os

    from smearmil.bench.demo import BUSY_LOOP, busy_cores, figures

    def spinning() -> set[int]:  # processes of this test's children running the busy loop
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z" and BUSY_LOOP.encode() in cmdline:
                found.add(int(stat.parent.name))
        return found

    with busy_cores(2):
        assert len(spinning()) == 2
    assert spinning() == set()
    for run, seconds in (("idle", 30), ("loaded", 90)):
        folder = tmp_path / run / "cv" / "cnn"
        folder.mkdir(parents=True)
        summary = {"metrics": {"roc_auc": {"mean": 0.9}}, "wall_seconds": seconds}
        (folder / "summary.json").write_text(json.dumps(summary))
    assert figures(tmp_path / "idle") == figures(tmp_path / "loaded") == {"cnn": {"roc_auc": {"mean": 0.9}}}
