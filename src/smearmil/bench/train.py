"""``smearmil bench train``: training steps of the CPU presets' shapes and the paper's against the machine's peak.

A step is what a training step computes: the batched augmentation and normalisation of uint8 cells, the
model's forward pass over a flat batch of bags, the loss, the backward pass and an Adam update (Lightning's
own per-step bookkeeping comes on top). FLOPs are counted with ``torch.utils.flop_counter`` (forward and
backward); the peak is the float32 matrix multiply measured in the same run. Several bags per step (one
flat batch with a segment index) is timed against one bag per step on the same cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .predict import count_gflop, matmul_peak, median_seconds

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

    @property
    def gflops(self) -> float:
        return self.gflop / self.step_seconds

    @property
    def several_vs_one(self) -> float:
        return self.one_bag_seconds / self.small_bags_seconds


@dataclass
class TrainBench:
    peak_gflops: float
    threads: int
    shapes: list[TrainShape]

    def ratio(self, shape: TrainShape) -> float:
        return shape.gflops / self.peak_gflops


def _step_fn(preset: str, overrides: dict[str, Any], sizes: list[int], seed: int = 0) -> Any:
    """A closure running one training step on bags of ``sizes`` cells, and its model's input size."""
    from ..models.base import Bags
    from ..models.factory import build_model
    from ..training.augment import BatchTransform
    from ..training.config import load_config

    config = load_config(preset, overrides)
    size = config.image.input_size
    torch.manual_seed(seed)
    n_attributes = len(config.model.attributes)
    model = build_model(config.model, 2, n_attributes, size).train()
    stats = {
        "mean": torch.full((3, size, size), 0.5),
        "std": torch.tensor(0.25),
        "eigvals": torch.tensor([1e-4, 1e-3, 1e-2]),
        "eigvecs": torch.eye(3),
    }
    a = config.train.augment
    transform = BatchTransform(stats, a.flips, a.rot90, a.pca_colour_std, True, a.pca_colour_scale)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    rng = np.random.default_rng(seed)
    cells = [torch.from_numpy(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)) for n in sizes]
    labels = torch.tensor([i % 2 for i in range(len(sizes))])

    def step(chosen: list[int]) -> None:
        images = [transform(cells[i], train=True) for i in chosen]
        bags = Bags.of(torch.zeros(len(chosen), n_attributes), images, labels=labels[chosen])
        loss = model.loss(model(bags), labels[chosen])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def bench_shape(
    name: str, preset: str, overrides: dict[str, Any], bags: int, repeats: int, seed: int = 0
) -> TrainShape:
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(16, 201, bags)]  # realistic bags: 16 to 200 cells
    step = _step_fn(preset, overrides, sizes, seed)
    everyone = list(range(bags))
    gflop = count_gflop(lambda: step(everyone))
    seconds = median_seconds(lambda: step(everyone), repeats)
    small = _step_fn(preset, overrides, [16] * bags, seed)
    several = median_seconds(lambda: small(everyone), repeats)
    one = median_seconds(lambda: [small([i]) for i in everyone], repeats)
    return TrainShape(name, bags, sum(sizes), gflop, seconds, several, one)


def bench_train(bags: int = 4, repeats: int = 3, shapes: list[str] | None = None) -> TrainBench:
    peak = matmul_peak()
    chosen = shapes or list(SHAPES)
    found = [bench_shape(name, *SHAPES[name], bags, repeats) for name in chosen]
    return TrainBench(peak, torch.get_num_threads(), found)
