"""Bags for training: datasets over the image cache, a flat-batch collate, and the data module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from ..data.cache import ImageCache
from ..models.base import Bags
from ..utils.balance import balanced_draw_weights
from ..utils.balance import class_weights as inverse_class_frequency


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


class BagDataset(Dataset):
    """One item per patient: its cells (uint8, from the cache), attributes and label."""

    def __init__(self, data: FoldData, ids: Sequence[str], with_images: bool, max_cells: int | None = None):
        self.data, self.ids, self.with_images, self.max_cells = data, list(ids), with_images, max_cells

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
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
                rows = np.sort(torch.randperm(len(bag))[: self.max_cells].numpy())
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
        dataset = BagDataset(self.data, ids, self.with_images, self.max_cells if train else None)
        generator = torch.Generator().manual_seed(self.seed)
        sampler = None
        if train and self.balance == "sampler":
            weights = balanced_draw_weights(np.array([self.data.labels[i] for i in ids]))
            sampler = WeightedRandomSampler(weights.tolist(), len(ids), replacement=True, generator=generator)
        return DataLoader(
            dataset,
            batch_size=self.bags_per_batch,
            shuffle=train and sampler is None,
            sampler=sampler,
            collate_fn=collate_bags,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data.ids["train"], train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.data.ids["val"], train=False) if self.data.ids["val"] else []
