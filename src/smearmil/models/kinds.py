"""Model kinds (``model.kind`` in a config): what each builds, what it needs and how it trains.

A kind is a class registered in ``MODELS`` that says which model class it makes (and so which inputs
it needs: images, attributes, cached features), declares its own settings (``Params``: they sit
in the ``model`` section of a config beside ``kind``), builds the whole model (to load saved
weights), and lists its training stages: each stage builds a model, possibly from the models earlier
stages trained, and the last stage (or ``assemble``) gives the final model. A new kind is one new file and one
declaration in ``models.specs``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from ..utils.registry import NoParams
from .base import MILModel
from .specs import ATTRIBUTES, FEATURES, IMAGES, MODELS

if TYPE_CHECKING:
    from .specs import ModelConfig


@dataclass(frozen=True)
class ModelDims:
    n_classes: int
    n_attributes: int
    input_size: int


@dataclass(frozen=True)
class Stage:
    """One training stage: ``name`` (its folder and ``train.stages`` key), the offset of its seed,
    ``build(trained)`` making the model to train from the models of the stages before it, and what its
    progress calls it (``title``, default ``name``: ``moe: gate``)."""

    name: str
    seed_offset: int
    build: Callable[[dict[str, MILModel]], MILModel]
    title: str = ""

    def label(self, kind: str) -> str:
        """How progress names it: ``moe: cnn expert``, or ``cnn`` for a kind's only stage of its name."""
        title = self.title or self.name
        return kind if title == kind else f"{kind}: {title}"


class ModelKind:
    """Base class of a registered kind: set ``model`` and ``stage_names``; implement ``build`` and ``stages``."""

    model: ClassVar[type[MILModel]]
    stage_names: ClassVar[tuple[str, ...]]
    Params: ClassVar[type[BaseModel]] = NoParams  # read as ``config.params``

    @classmethod
    def inputs(cls) -> frozenset[str]:
        return cls.model.inputs

    @classmethod
    def uses(cls, what: str) -> bool:
        return what in cls.inputs()

    def build(self, config: ModelConfig, dims: ModelDims) -> MILModel:
        """The whole model with fresh weights (e.g. to load saved ones into)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def stages(self, config: ModelConfig, dims: ModelDims, init: bool = True) -> list[Stage]:
        """The stages that train it; ``init`` loads pre-trained encoder weights (``model.encoder.init``)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def assemble(self, trained: dict[str, MILModel], config: ModelConfig, dims: ModelDims) -> MILModel:
        """The final model from the trained stages (default: the last one)."""
        return list(trained.values())[-1]


def data_label(inputs: frozenset[str]) -> str:
    """How comparison tables name what a method sees: imgs, attrs, imgs+attrs, feats."""
    parts = [label for what, label in ((IMAGES, "imgs"), (FEATURES, "feats"), (ATTRIBUTES, "attrs")) if what in inputs]
    return "+".join(parts)


def kind_of(config: Any) -> ModelKind:
    """The registered kind a model config names."""
    return MODELS.get(config.kind)()
