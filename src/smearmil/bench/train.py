"""``smearmil bench train``: training steps of the CPU presets' shapes and the paper's against the machine's peak.

A step is what a training step computes: the batched augmentation and normalisation of uint8 cells, the
model's forward pass over a flat batch of bags, the loss, the backward pass and an Adam update (Lightning's
own per-step bookkeeping comes on top). FLOPs are counted with ``torch.utils.flop_counter`` (forward and
backward); the peak is the float32 matrix multiply measured in the same run. Several bags per step (one
flat batch with a segment index) is timed against one bag per step on the same cells."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from ..models.base import Bags
from .predict import count_gflop, matmul_peak, median_seconds

AUGMENT, OPTIMISER = "bench: augmentation", "bench: optimiser"
KERNELS = {  # kinds of work in a step, by the aten operators' names (self time)
    "convolutions": ("conv",),  # mkldnn_convolution, convolution_backward, _slow_conv2d_*, ...
    "batch norm": ("batch_norm",),
    "pooling": ("pool",),
    "activations": ("relu", "threshold", "clamp_min"),
}
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {  # name -> (config, overrides)
    "cpu-cnn (K=8, 64 px)": ("cpu-cnn", {}),
    "cpu-attention": ("cpu-attention", {}),
    "paper cnn-mean-k32, 224 px": ("cnn-mean-k32", {}),
}


@dataclass
class TrainShape:
    name: str
    bags: int
    cells: int
    gflop: float  # per step
    step_seconds: float
    small_bags_seconds: float  # the same 16-cell bags, several per step
    one_bag_seconds: float  # ... one per step
    channels_last_seconds: float  # the step with train.channels_last (off by default)
    several_vs_one: float  # median over pairs timed in turns of (one bag a step) / (several a step)

    @property
    def gflops(self) -> float:
        return self.gflop / self.step_seconds


@dataclass
class TrainBench:
    peak_gflops: float
    threads: int
    shapes: list[TrainShape]
    data_wait: DataWait | None = None
    breakdowns: list[StepBreakdown] | None = None  # the first shape's step, in each layout

    def ratio(self, shape: TrainShape, channels_last: bool = False) -> float:
        seconds = shape.channels_last_seconds if channels_last else shape.step_seconds
        return shape.gflop / seconds / self.peak_gflops


def _training_parts(preset: str, overrides: dict[str, Any], seed: int = 0) -> Any:
    """The preset's model (training mode), a batched augmentation with plausible statistics, an Adam
    optimiser and a ``step(bags)`` that trains on a batch of uint8 cells as ``MILModule`` does."""
    from ..models.factory import build_model
    from ..models.inference import use_channels_last
    from ..training.augment import BatchTransform
    from ..training.config import load_config

    config = load_config(preset, overrides)
    size = config.image.input_size
    torch.manual_seed(seed)
    model = build_model(config.model, 2, len(config.model.attributes), size).train()
    if config.train.channels_last:
        use_channels_last(model)
    stats = {
        "mean": torch.full((3, size, size), 0.5),
        "std": torch.tensor(0.25),
        "eigvals": torch.tensor([1e-4, 1e-3, 1e-2]),
        "eigvecs": torch.eye(3),
    }
    a = config.train.augment
    transform = BatchTransform(stats, a.flips, a.rot90, a.pca_colour_std, True, a.pca_colour_scale)
    t = config.train
    optimiser = torch.optim.Adam(model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay, foreach=True)

    def step(bags: Bags) -> None:
        assert bags.images is not None and bags.labels is not None
        with record_function(AUGMENT):
            bags.images = transform(bags.images, train=True)
        loss = model.loss(model(bags), bags.labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        with record_function(OPTIMISER):
            optimiser.step()

    return config, step


def training_step(preset: str, overrides: dict[str, Any], sizes: list[int], seed: int = 0) -> Any:
    """A closure running one training step on the chosen bags of ``sizes`` random cells."""
    config, step = _training_parts(preset, overrides, seed)
    size, n_attributes = config.image.input_size, len(config.model.attributes)
    rng = np.random.default_rng(seed)
    cells = [torch.from_numpy(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)) for n in sizes]
    labels = torch.tensor([i % 2 for i in range(len(sizes))])

    def chosen_step(chosen: list[int]) -> None:
        step(Bags.of(torch.zeros(len(chosen), n_attributes), [cells[i] for i in chosen], labels=labels[chosen]))

    return chosen_step


def bag_sizes(bags: int, seed: int = 0) -> list[int]:
    """Cells in each of ``bags`` realistic bags: 16 to 200."""
    return [int(n) for n in np.random.default_rng(seed).integers(16, 201, bags)]


@dataclass
class DataWait:
    """Training epochs fed by the real data loader from an image cache: the time spent waiting for batches."""

    preset: str
    workers: int
    steps: int
    wait_seconds: float
    total_seconds: float

    @property
    def share(self) -> float:
        return self.wait_seconds / self.total_seconds


def data_wait(preset: str = "cpu-cnn", bags: int = 32, workers: int = 0, seed: int = 0) -> DataWait:
    """One epoch of ``bags`` bags (16 to 200 cells) from a synthetic cache through ``BagDataModule``'s
    loader (epoch sampler, cell sampling, collate) into training steps."""
    from ..data.cache import ImageCache
    from ..training.data import BagDataModule, FoldData

    config, step = _training_parts(preset, {}, seed)
    sizes = {f"P{i:03d}": n for i, n in enumerate(bag_sizes(bags, seed))}
    with tempfile.TemporaryDirectory(prefix="smearmil-bench-") as tmp:
        cache = ImageCache.synthetic(Path(tmp) / "cache", sizes, config.image.input_size, seed)
        ids = list(sizes)
        n_attributes = len(config.model.attributes)
        data = FoldData(
            cache,
            {"train": ids, "val": [], "test": []},
            {pid: i % 2 for i, pid in enumerate(ids)},
            {pid: np.zeros(n_attributes, np.float32) for pid in ids},
            2,
        )
        t = config.train
        loader = BagDataModule(
            data, True, t.bags_per_batch, "none", t.max_cells_per_bag, workers, seed
        ).train_dataloader()
        step(next(iter(loader)))  # warm-up: first-call allocations are not the loader's
        wait, steps, start = 0.0, 0, time.perf_counter()
        batches = iter(loader)
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            wait += time.perf_counter() - asked
            if batch is None:
                break
            step(batch)
            steps += 1
        return DataWait(preset, workers, steps, wait, time.perf_counter() - start)


@dataclass
class StepBreakdown:
    """What a training step's time is made of, from the profiler: seconds per kind of work (``KERNELS``,
    the augmentation, the optimiser, and the rest: autograd, Python, other operators)."""

    channels_last: bool
    step_seconds: float
    seconds: dict[str, float]
    convolution_gflop: float  # the convolutions' share of the step's counted FLOPs

    def share(self, part: str) -> float:
        return self.seconds[part] / self.step_seconds

    @property
    def convolution_gflops(self) -> float:
        """GFLOP/s inside the convolution kernels alone: the ceiling of a step of this shape with them
        (0 when the profiler saw no convolution)."""
        seconds = self.seconds["convolutions"]
        return self.convolution_gflop / seconds if seconds > 0 else 0.0


def step_breakdown(
    preset: str, overrides: dict[str, Any], sizes: list[int], channels_last: bool, steps: int = 3, seed: int = 0
) -> StepBreakdown:
    """Profile ``steps`` training steps on bags of ``sizes`` cells and split their time by kind of work."""
    layout = {**overrides, "train": {**overrides.get("train", {}), "channels_last": channels_last}}
    step = training_step(preset, layout, sizes, seed)
    everyone = list(range(len(sizes)))
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(everyone)  # also the warm-up
    counts = counter.get_flop_counts().get("Global", {})
    convolution_gflop = sum(n for op, n in counts.items() if "conv" in str(op)) / 1e9
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step(everyone)
        wall = (time.perf_counter() - start) / steps
    seconds = dict.fromkeys([*KERNELS, "augmentation", "optimiser", "other"], 0.0)
    for event in prof.key_averages():
        name = event.key
        if name == AUGMENT:
            seconds["augmentation"] += event.cpu_time_total / 1e6 / steps
        elif name == OPTIMISER:
            seconds["optimiser"] += event.cpu_time_total / 1e6 / steps
        else:
            kind = next((k for k, words in KERNELS.items() if any(w in name for w in words)), None)
            if kind is not None and name.startswith("aten::"):
                seconds[kind] += event.self_cpu_time_total / 1e6 / steps
    seconds["other"] = max(0.0, wall - sum(seconds.values()))
    return StepBreakdown(channels_last, wall, seconds, convolution_gflop)


def paired_medians(first: Any, second: Any, repeats: int) -> tuple[float, float, float]:
    """Median seconds of two ways of doing the same work, timed in turns, and the median of the pairs'
    ratios (second / first): a slow spell of the machine weighs on both sides of a pair alike."""
    first(), second()  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, found in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            found.append(time.perf_counter() - start)
    ratios = [b / a for a, b in zip(*times)]
    return statistics.median(times[0]), statistics.median(times[1]), statistics.median(ratios)


def bench_shape(
    name: str, preset: str, overrides: dict[str, Any], bags: int, repeats: int, seed: int = 0
) -> TrainShape:
    sizes = bag_sizes(bags, seed)
    step = training_step(preset, overrides, sizes, seed)
    everyone = list(range(bags))
    gflop = count_gflop(lambda: step(everyone))
    seconds = median_seconds(lambda: step(everyone), repeats)
    layout = {**overrides, "train": {**overrides.get("train", {}), "channels_last": True}}
    channels_last = training_step(preset, layout, sizes, seed)
    channels_last_seconds = median_seconds(lambda: channels_last(everyone), repeats)
    small = training_step(preset, overrides, [16] * bags, seed)
    several, one, ratio = paired_medians(
        lambda: small(everyone), lambda: [small([i]) for i in everyone], max(repeats, 9)
    )
    return TrainShape(name, bags, sum(sizes), gflop, seconds, several, one, channels_last_seconds, ratio)


def bench_train(bags: int = 4, repeats: int = 3, shapes: list[str] | None = None) -> TrainBench:
    peak = matmul_peak()
    chosen = shapes or list(SHAPES)
    found = [bench_shape(name, *SHAPES[name], bags, repeats) for name in chosen]
    sizes = bag_sizes(bags)  # bench_shape's bags
    breakdowns = [step_breakdown(*SHAPES[chosen[0]], sizes, layout) for layout in (False, True)]
    return TrainBench(peak, torch.get_num_threads(), found, data_wait(SHAPES[chosen[0]][0]), breakdowns)
