"""Bags for training: datasets over the image cache, a flat-batch collate, and the data module.

Every random draw of an epoch (the order of the bags, class-balanced draws, the cells kept from a
large bag) depends only on the seed and the epoch, so a stage resumed after a kill at any moment
repeats exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.cache import ImageCache
from ..models.base import Bags
from ..utils.balance import balanced_draw_weights
from ..utils.balance import class_weights as inverse_class_frequency
from ..utils.distributed import rank, world_size


@dataclass
class FoldData:
    """Everything a stage trains and evaluates on: ids per set, labels, encoded attributes, the cache."""

    cache: ImageCache | None
    ids: dict[str, list[str]]  # "train", "val", "test"
    labels: dict[str, int]  # patient -> class index
    attributes: dict[str, np.ndarray]  # patient -> encoded attribute vector
    n_classes: int

    def class_weights(self) -> torch.Tensor:
        """Inverse class frequency on the training patients (mean weight 1)."""
        labels = np.array([self.labels[i] for i in self.ids["train"]], dtype=np.int64)
        return torch.tensor(inverse_class_frequency(labels, self.n_classes), dtype=torch.float32)


def epoch_rng(seed: int, epoch: int, *more: int) -> np.random.Generator:
    """The random generator of one (seed, epoch, ...) draw: the same whenever it is asked for."""
    return np.random.default_rng([seed, epoch, *more])


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(bag index, epoch)``: a fresh permutation per epoch, or class-balanced draws with
    replacement when ``weights`` are given; Lightning calls ``set_epoch`` before every epoch.

    With several processes, each takes every ``world``-th bag of the epoch's order (the order padded
    from its start to a multiple of ``world``), so all take the same number of steps."""

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // world_size())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = epoch_rng(self.seed, self.epoch)
        order = rng.permutation(self.n) if self.p is None else rng.choice(self.n, self.n, replace=True, p=self.p)
        if world_size() > 1:
            order = np.resize(order, len(self) * world_size())[rank() :: world_size()]
        return iter([(int(i), self.epoch) for i in order])


class ShardSampler(Sampler[int]):
    """Every bag in order; with several processes, every ``world``-th from the process's rank, the shares
    padded from the start to one length (a process with no bag would stall the others' validation; a
    patient scored twice counts once, as metrics are gathered by patient)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n if world_size() == 1 else -(-self.n // world_size())

    def __iter__(self) -> Iterator[int]:
        if world_size() == 1:
            return iter(range(self.n))
        order = np.resize(np.arange(self.n), len(self) * world_size()) if self.n else np.zeros(0, np.int64)
        return iter(int(i) for i in order[rank() :: world_size()])


class BagDataset(Dataset):
    """One item per patient: its cells (uint8, from the cache), attributes and label. An index may be
    ``(i, epoch)``: a bag larger than ``max_cells`` then keeps cells drawn for that epoch."""

    def __init__(
        self, data: FoldData, ids: Sequence[str], with_images: bool, max_cells: int | None = None, seed: int = 0
    ):
        self.data, self.ids, self.with_images, self.max_cells, self.seed = data, list(ids), with_images, max_cells, seed

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        i, epoch = index if isinstance(index, tuple) else (index, 0)
        pid = self.ids[i]
        item = {
            "id": pid,
            "label": self.data.labels.get(pid, -1),
            "attributes": torch.from_numpy(self.data.attributes[pid]),
        }
        if self.with_images:
            assert self.data.cache is not None
            bag = self.data.cache.bag(pid)
            if self.max_cells is not None and len(bag) > self.max_cells:
                rows = np.sort(epoch_rng(self.seed, epoch, i).choice(len(bag), self.max_cells, replace=False))
                bag = bag[rows]
            item["images"] = torch.from_numpy(np.array(bag))
        return item


def collate_bags(items: list[dict]) -> Bags:
    images = [it["images"] for it in items] if "images" in items[0] else None
    return Bags.of(
        torch.stack([it["attributes"] for it in items]),
        images,
        labels=torch.tensor([it["label"] for it in items]),
        ids=[it["id"] for it in items],
    )


class BagDataModule(L.LightningDataModule):
    def __init__(
        self,
        data: FoldData,
        with_images: bool,
        bags_per_batch: int,
        balance: str = "none",
        max_cells: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.data, self.with_images, self.bags_per_batch = data, with_images, bags_per_batch
        self.balance, self.max_cells, self.num_workers, self.seed = balance, max_cells, num_workers, seed

    def _loader(self, ids: Sequence[str], train: bool) -> DataLoader:
        dataset = BagDataset(self.data, ids, self.with_images, self.max_cells if train else None, self.seed)
        sampler: Sampler = ShardSampler(len(ids))
        if train:
            weights = None
            if self.balance == "sampler":
                weights = balanced_draw_weights(np.array([self.data.labels[i] for i in ids]))
            sampler = EpochSampler(len(ids), self.seed, weights)
        return DataLoader(
            dataset,
            batch_size=self.bags_per_batch,
            shuffle=False,
            sampler=sampler,
            collate_fn=collate_bags,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._on_gpu(),
            prefetch_factor=4 if self.num_workers > 0 else None,
        )

    def _on_gpu(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.accelerator.__class__.__name__ == "CUDAAccelerator"

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data.ids["train"], train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.data.ids["val"], train=False) if self.data.ids["val"] else []
