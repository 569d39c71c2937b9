"""``smearmil bench predict``: seconds per patient of inference against this machine's matrix-multiply peak.

For each model shape (the paper's ResNet-K at 224 px and the CPU presets) one patient of ``cells`` cells is
predicted: with the plain model under ``no_grad``, and with batch norm folded into the convolutions under
``inference_mode`` (the path ``predict`` takes); FLOPs are counted with ``torch.utils.flop_counter``, and
the peak is the best float32 matrix multiply measured in the same run. From JPEG files adds decoding.
bfloat16 (autocast) is timed separately where the CPU runs it, never in the ratio."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

SHAPES: dict[str, tuple[str, dict[str, Any]]] = {  # name -> (config, overrides)
    "paper cnn-mean-k32, 224 px": ("cnn-mean-k32", {}),
    "cpu-cnn (K=8, 64 px)": ("cpu-cnn", {}),
    "cpu-attention": ("cpu-attention", {}),
}


@dataclass
class ShapeTimes:
    name: str
    cells: int
    size: int
    gflop: float
    plain_seconds: float
    fast_seconds: float
    jpeg_seconds: float
    bf16_seconds: float | None

    def gflops(self, seconds: float) -> float:
        return self.gflop / seconds


@dataclass
class PredictBench:
    peak_gflops: float
    threads: int
    shapes: list[ShapeTimes]

    def ratio(self, shape: ShapeTimes) -> float:
        return shape.gflops(shape.fast_seconds) / self.peak_gflops


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: allocations, oneDNN primitives
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(sizes: tuple[int, ...] = (1536, 2048, 3072), repeats: int = 5) -> float:
    """The best float32 GFLOP/s of square matrix multiplies on this machine, now (the best of several sizes
    and repeats: a high peak makes every ratio against it conservative)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)

        def multiply(a: torch.Tensor = a, b: torch.Tensor = b) -> torch.Tensor:
            return a @ b

        seconds = min(median_seconds(multiply, 1) for _ in range(repeats))
        best = max(best, 2 * n**3 / seconds / 1e9)
    return best


def count_gflop(fn: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _bf16_seconds(model: torch.nn.Module, bags: Any, repeats: int) -> float | None:
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):

            def run() -> Any:
                return model(bags)

            return median_seconds(run, repeats)
    except (RuntimeError, TypeError):
        return None


def bench_shape(name: str, preset: str, overrides: dict[str, Any], cells: int, repeats: int) -> ShapeTimes:
    from ..models.base import Bags
    from ..models.factory import build_model
    from ..models.inference import for_inference
    from ..training.config import load_config

    config = load_config(preset, overrides)
    size = config.image.input_size
    torch.manual_seed(0)
    model = build_model(config.model, 2, len(config.model.attributes), size).eval()
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (cells, size, size, 3), dtype=np.uint8)
    images = torch.from_numpy(raw).permute(0, 3, 1, 2).contiguous().float() / 255.0
    bags = Bags.of(torch.zeros(1, len(config.model.attributes)), [images])
    fast = for_inference(model)

    def plain() -> Any:
        with torch.no_grad():
            return model(bags)

    def folded() -> Any:
        with torch.inference_mode():
            return fast(bags)

    with tempfile.TemporaryDirectory() as folder:  # the same cells as JPEG files, decoded each time
        files = [Path(folder) / f"{i}.jpg" for i in range(cells)]
        for path, cell in zip(files, raw):
            Image.fromarray(cell).save(path, quality=95)
        prep = config.image.preprocessing

        def from_jpeg() -> Any:
            decoded = np.stack([prep.load(p.read_bytes(), p.name) for p in files])
            tensor = torch.from_numpy(decoded).permute(0, 3, 1, 2).contiguous().float() / 255.0
            with torch.inference_mode():
                return fast(Bags.of(torch.zeros(1, len(config.model.attributes)), [tensor]))

        jpeg = median_seconds(from_jpeg, repeats)
    return ShapeTimes(
        name,
        cells,
        size,
        count_gflop(plain),
        median_seconds(plain, repeats),
        median_seconds(folded, repeats),
        jpeg,
        _bf16_seconds(fast, bags, repeats),
    )


def bench_predict(cells: int = 82, repeats: int = 5, shapes: list[str] | None = None) -> PredictBench:
    peak = matmul_peak()
    chosen = shapes or list(SHAPES)
    found = [bench_shape(name, *SHAPES[name], cells, repeats) for name in chosen]
    return PredictBench(peak, torch.get_num_threads(), found)
