"""Benchmarks that print measured ratios: bench cache|features|memory|heads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import bench_app, guarded, out
from .cell_cmds import HeadOpt
from .flags import DataFlags, DataPath, QuietOpt, data_flags


@bench_app.command("features")
@guarded
def bench_features_cmd(
    path: DataPath,
    cells: Annotated[int, typer.Option(help="How many cells to time.")] = 200,
    jobs: Annotated[int, typer.Option(help="Parallel processes.")] = 2,
    target_cells: Annotated[int, typer.Option(help="Cohort size to project the time for.")] = 13000,
    goal_minutes: Annotated[float, typer.Option(help="Time goal for that cohort.")] = 20.0,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Cells per second of the 94 hand-crafted features; last line `ratio: goal / projected time`."""
    from ..bench import bench_features

    result = bench_features(path, n_cells=cells, n_jobs=jobs, cache_dir=cache_dir, progress=not quiet)
    minutes = result.minutes_for(target_cells)
    out.print(f"cells: {result.cells}")
    out.print(f"1 process: {result.cells_per_second(False):.1f} cells/s")
    out.print(f"{result.n_jobs} processes: {result.cells_per_second():.1f} cells/s")
    out.print(f"{target_cells:,} cells on {result.n_jobs} processes: {minutes:.1f} min (goal {goal_minutes:g} min)")
    out.print(f"ratio: {goal_minutes / minutes:.2f}")


@bench_app.command("cache")
@guarded
@data_flags
def bench_cache_cmd(
    path: DataPath,
    size: Annotated[int, typer.Option(help="Side the images are resized to.")] = 224,
    crop: Annotated[int | None, typer.Option(help="Central crop after resizing.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder.")] = None,
    quiet: QuietOpt = False,
    data: DataFlags = DataFlags(),
) -> None:
    """Time one epoch from the cache against decoding the same images; last line `ratio: N`."""
    from ..bench import bench_cache
    from ..data.images import Preprocessing

    result = bench_cache(path, data.options(), Preprocessing(size, crop), cache_dir, progress=not quiet)
    out.print(f"cells: {result.cells}")
    out.print(f"cache epoch: {result.cache_seconds:.3f} s ({result.cells / result.cache_seconds:,.0f} cells/s)")
    out.print(f"decode epoch: {result.decode_seconds:.3f} s ({result.cells / result.decode_seconds:,.0f} cells/s)")
    out.print(f"ratio: {result.ratio:.1f}")


@bench_app.command("memory")
@guarded
def bench_memory_cmd(
    cells: Annotated[int, typer.Option(help="Cells of the one bag predicted.")] = 5000,
    centring_cells: Annotated[int, typer.Option(help="Cells the mean-centring statistics are computed on.")] = 10000,
    size: Annotated[int, typer.Option(help="Cell side in pixels.")] = 224,
    budget_gb: Annotated[float, typer.Option(help="Memory budget.")] = 2.0,
    quiet: QuietOpt = False,
) -> None:
    """Peak RSS of predicting one large bag and of mean centring, each in a fresh process; last line
    `ratio: budget / peak`."""
    from ..bench import bench_memory

    result = bench_memory(cells, centring_cells, size, budget_gb, progress=not quiet)
    out.print(f"python + torch + smearmil loaded: {result.baseline_mb:,.0f} MB")
    out.print(
        f"predict one bag of {result.inference_cells:,} cells at {size} px (cnn-mean-k32): "
        f"peak {result.inference_mb:,.0f} MB"
    )
    out.print(
        f"mean centring and PCA colour statistics of {result.centring_cells:,} cells at {size} px: "
        f"peak {result.centring_mb:,.0f} MB"
    )
    out.print(f"budget: {result.budget_mb:,.0f} MB")
    out.print(f"ratio: {result.ratio:.2f}")


@bench_app.command("heads")
@guarded
def bench_heads_cmd(
    features: Annotated[
        Path | None, typer.Argument(metavar="FEATURES", help="Feature folder (default: simulate 4 classes and embed).")
    ] = None,
    patients: Annotated[int, typer.Option(help="Simulated patients.")] = 100,
    cells: Annotated[str, typer.Option(help="Cells per simulated patient, MIN:MAX.")] = "16:64",
    folds: Annotated[int, typer.Option(help="Folds.")] = 5,
    head: HeadOpt = "attention",
    head_epochs: Annotated[int, typer.Option("--head-epochs", help="Epochs of the MIL head.")] = 40,
    goal_seconds: Annotated[float, typer.Option(help="Time goal of the whole CV.")] = 60.0,
    quiet: QuietOpt = False,
) -> None:
    """Wall time of a k-fold CV of a MIL head on cached features; last line `ratio: goal / measured`."""
    from ..bench import bench_heads

    low, _, high = cells.partition(":")
    result = bench_heads(features, patients, (int(low), int(high or low)), folds, head, head_epochs, progress=not quiet)
    out.print(f"patients: {result.patients}, cells: {result.cells:,}, features ready in {result.prepare_seconds:.1f} s")
    out.print(
        f"{result.folds}-fold CV, {head} head, {head_epochs} epochs: {result.cv_seconds:.1f} s, "
        f"macro-F1 {result.macro_f1:.3f} (test folds)"
    )
    out.print(f"ratio: {goal_seconds / result.cv_seconds:.2f}")


def _print_peak(gflops: float, threads: int) -> None:
    out.print(f"float32 matrix-multiply peak: {gflops:.0f} GFLOP/s ({threads} threads)")


@bench_app.command("predict")
@guarded
def bench_predict_cmd(
    cells: Annotated[
        int, typer.Option("--cells", help="Cells of the patient predicted (the paper's median: 82).")
    ] = 82,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed repeats (median).")] = 5,
) -> None:
    """Seconds per patient of inference, plain and fast (batch norm folded, channels-last), from tensors and
    from JPEG files, against the matrix-multiply peak; last line `ratio: achieved / peak` (paper's model)."""
    from ..bench.predict import bench_predict

    result = bench_predict(cells, repeats)
    _print_peak(result.peak_gflops, result.threads)
    for s in result.shapes:
        out.print(
            f"{s.name}, {s.cells} cells: {s.gflop:.2f} GFLOP; plain {s.plain_seconds:.3f} s "
            f"({s.gflops(s.plain_seconds) / result.peak_gflops:.0%} of peak); fast {s.fast_seconds:.3f} s "
            f"({result.ratio(s):.0%}); from JPEG files {s.jpeg_seconds:.3f} s"
            + (f"; bf16 autocast {s.bf16_seconds:.3f} s (not in the ratio)" if s.bf16_seconds else "")
        )
    out.print(f"ratio: {result.ratio(result.shapes[0]):.2f}")


@bench_app.command("train")
@guarded
def bench_train_cmd(
    bags: Annotated[int, typer.Option("--bags", help="Bags per step (16 to 200 cells each, drawn once).")] = 4,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed repeats (median).")] = 3,
) -> None:
    """Training steps of the CPU presets' shapes and the paper's: cells per second, FLOPs per step, GFLOP/s
    against the matrix-multiply peak, several bags per step against one; last line `ratio: achieved / peak`
    (cpu-cnn)."""
    from ..bench.train import bench_train

    result = bench_train(bags, repeats)
    _print_peak(result.peak_gflops, result.threads)
    for s in result.shapes:
        out.print(
            f"{s.name}: {s.bags} bags, {s.cells} cells, {s.gflop:.2f} GFLOP a step in {s.step_seconds:.3f} s "
            f"({s.cells / s.step_seconds:,.0f} cells/s, {s.gflops:.1f} GFLOP/s, {result.ratio(s):.0%} of peak), "
            f"channels-last {s.channels_last_seconds:.3f} s ({result.ratio(s, channels_last=True):.0%}); "
            f"16-cell bags: {s.bags} a step {s.small_bags_seconds:.3f} s, one a step {s.one_bag_seconds:.3f} s "
            f"({s.several_vs_one:.2f}x)"
        )
    first = result.shapes[0]
    for b in result.breakdowns or []:
        parts = ", ".join(f"{part} {b.share(part):.0%}" for part in b.seconds)
        inside = b.convolution_gflops
        out.print(
            f"{first.name} step, {'channels-last' if b.channels_last else 'default layout'} (profiled, "
            f"{b.step_seconds:.3f} s): {parts}; inside the convolution kernels {inside:.0f} GFLOP/s = "
            f"{inside / result.peak_gflops:.0%} of peak, the most this step reaches with them"
        )
    if (w := result.data_wait) is not None:
        out.print(
            f"data loader ({w.preset}, {w.workers} workers, from the image cache): {w.steps} steps in "
            f"{w.total_seconds:.2f} s, {w.wait_seconds:.3f} s waiting for batches ({w.share:.1%} of the time)"
        )
    out.print(f"ratio: {result.ratio(result.shapes[0]):.2f}")


@bench_app.command("demo")
@guarded
def bench_demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the two demo runs.")] = Path("runs/bench-demo"),
    processes: Annotated[int | None, typer.Option(help="Busy processes of the load (default: one per core).")] = None,
    goal: Annotated[float, typer.Option(help="The slow-down under load to stay within.")] = 2.5,
) -> None:
    """`smearmil demo` idle, then while busy processes keep every core busy (both in fresh processes);
    last line `ratio: loaded / idle` (goal: at most 2.5)."""
    from ..bench.demo import bench_demo

    out.print(f"two demo runs in {out_dir}: idle, then under load (a few minutes each)")
    result = bench_demo(out_dir, processes)
    out.print(f"idle: {result.idle_seconds:.0f} s")
    out.print(f"under {result.load_processes} busy processes: {result.loaded_seconds:.0f} s (goal: {goal:g}x idle)")
    out.print(f"same figures under load: {'yes' if result.same_figures else 'NO: compare the cv/*/summary.json'}")
    out.print(f"ratio: {result.ratio:.2f}")
