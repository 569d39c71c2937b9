"""The one config loader (run, ssl, head, compare), registries' validation, and configs of older versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from smearmil.data.layouts import LAYOUTS
from smearmil.models import ENCODERS, EncoderConfig
from smearmil.protocols.compare import load_compare_config
from smearmil.training.config import load_config
from smearmil.training.config.experts import load_experts_config
from smearmil.training.config.head import HeadConfig, load_head_config
from smearmil.training.config.ssl import load_ssl_config
from smearmil.training.methods import load_method
from smearmil.utils.config_files import COMMANDS, merge_dicts, shipped_presets


def test_every_shipped_preset_loads_with_its_own_kind() -> None:
    loaders = {
        "run": load_config,
        "ssl": load_ssl_config,
        "head": load_head_config,
        "compare": load_compare_config,
        "experts": load_experts_config,
        "baseline": lambda name: load_method(name).config,
    }
    assert set(loaders) == set(COMMANDS)
    for kind, load in loaders.items():
        presets = shipped_presets(kind)
        assert presets, kind
        for name in presets:
            assert load(name).name == name
    with pytest.raises(ValueError, match="is a run config, not a MIL-head config"):
        load_head_config("cpu-cnn")


def test_the_head_preset_is_the_default_head() -> None:
    preset = load_head_config("cpu-head")
    assert preset.model_dump(exclude={"name"}) == HeadConfig().model_dump(exclude={"name"})
    assert preset.pooling.params.hidden == 64
    # a pooling name gives that pooling with the head's small defaults, epochs from the override
    gated = load_head_config("gated_attention", {"epochs": 3})
    assert (gated.pooling.name, gated.pooling.params.hidden, gated.epochs) == ("gated_attention", 64, 3)
    assert load_head_config("lse").pooling.model_dump() == {"name": "lse", "r": 1.0}


def test_base_is_read_relative_to_the_file_that_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "small.yaml").write_text("base: cpu-cnn\nmodel: {encoder: {k: 2}}\ntrain: {epochs: 3}\n")
    (tmp_path / "presets" / "mine.yaml").write_text("base: small.yaml\ntrain: {lr: 0.01}\n")
    monkeypatch.chdir(tmp_path)  # not the folder of the files
    config = load_config(tmp_path / "presets" / "mine.yaml")
    assert (config.name, config.model.encoder.params.k, config.train.epochs, config.train.lr) == ("mine", 2, 3, 0.01)
    (tmp_path / "presets" / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="includes itself"):
        load_config(tmp_path / "presets" / "loop.yaml")


def test_components_with_other_names_replace_and_the_same_name_merges() -> None:
    base = {"pooling": {"name": "attention", "hidden": 64}, "train": {"epochs": 3, "lr": 0.1}}
    assert merge_dicts(base, {"pooling": {"name": "lse"}})["pooling"] == {"name": "lse"}
    assert merge_dicts(base, {"pooling": {"name": "attention", "hidden": 8}})["pooling"] == {
        "name": "attention",
        "hidden": 8,
    }
    assert merge_dicts(base, {"pooling": "attention"})["pooling"] == {"name": "attention", "hidden": 64}
    assert merge_dicts(base, {"pooling": "mean"})["pooling"] == "mean"
    assert merge_dicts(base, {"train": {"lr": 0.2}})["train"] == {"epochs": 3, "lr": 0.2}


def test_choosing_the_method_a_preset_already_uses_keeps_its_parameters() -> None:
    swav = load_ssl_config("cpu-ssl-swav", {"method": "swav"}).method.params
    assert (swav.queue_length, swav.queue_start_epoch) == (1024, 5)
    other = load_ssl_config("cpu-ssl-swav", {"method": "dino"})
    assert other.method.name == "dino" and other.method.params.teacher_temperature == 0.04
    assert load_ssl_config("cpu-ssl").with_method("swav").method.params.queue_length == 0


def test_model_kinds_validate_their_own_settings() -> None:
    moe = load_config("cpu-moe-cnn")
    assert (moe.model.params.paradigm, moe.model.params.gate_projection) == ("P1", 8)
    with pytest.raises(ValueError, match="model kind 'moe': paradigm: Input should be"):
        load_config("cpu-moe-cnn", {"model": {"paradigm": "P4"}})
    with pytest.raises(ValueError, match="model kind 'cnn': gate: Extra inputs"):
        load_config("cpu-cnn", {"model": {"gate": 3}})


def test_settings_a_component_does_not_declare_are_refused_naming_its_own(tmp_path: Path) -> None:
    """A pooling, an encoder, a model kind and an SSL config accept only the settings they declare."""
    for overrides, message in (
        ({"model": {"pooling": {"name": "mean", "hidden": 128}}}, "pooling 'mean': hidden: Extra inputs"),
        ({"model": {"encoder": {"name": "resnet18", "k": 32}}}, "encoder 'resnet18': k: Extra inputs"),
        ({"model": {"kind": "cnn", "paradigm": "P1"}}, "model kind 'cnn': paradigm: Extra inputs"),
    ):
        with pytest.raises(ValueError, match=message):
            load_config("cpu-cnn", overrides)
    old_ssl = tmp_path / "old-ssl.yaml"
    old_ssl.write_text("kind: ssl\nmethod: swav\nswav: {prototypes: 16}\n")
    with pytest.raises(ValueError, match="swav"):
        load_ssl_config(old_ssl)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_builds_from_its_defaults_and_embeds(name: str) -> None:
    encoder = EncoderConfig(name=name).build(32)
    out = encoder(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, encoder.out_dim) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", LAYOUTS.names())
def test_every_layout_says_what_it_needs_and_does_not_claim_an_empty_folder(name: str, tmp_path: Path) -> None:
    layout = LAYOUTS.get(name)
    assert layout.detect_order is None or isinstance(layout.detect_order, int)
    assert not layout.looks_like(tmp_path) and callable(layout.read)
    assert isinstance(getattr(layout, "expects", ""), str)
