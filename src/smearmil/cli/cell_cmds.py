"""Commands on cell encoders and cached features: ssl pretrain|evaluate|cv|compare, features extract|cv|train."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..data.options import DataOptions
from ..utils.config_files import shipped_presets
from ..utils.progress import console as err_console
from .app import error_line, features_app, guarded, out, ssl_app
from .flags import (
    CacheDirOpt,
    ConfigFlags,
    ConfigSeedOpt,
    DataFlags,
    DataPath,
    FoldsOpt,
    OverwriteOpt,
    QuietOpt,
    SeedOpt,
    SplitsOpt,
    TableJsonOpt,
    config_flags,
    data_flags,
    split_list,
)
from .tables import attention_table, fold_table

SSLConfigOpt = Annotated[
    str, typer.Option("--config", help=f"Pre-training preset ({', '.join(shipped_presets('ssl'))}) or YAML file.")
]
MethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method",
        help="SSL method: simclr, swav, dino or any registered one (`smearmil list`); default: the config's.",
    ),
]
HeadOpt = Annotated[
    str,
    typer.Option(
        "--head",
        help="Pooling of the MIL head (attention, gated_attention, mean, max, lse or any registered one: "
        "`smearmil list`), or a head config (YAML file with kind: head, or the cpu-head preset).",
    ),
]
HeadEpochsOpt = Annotated[
    int | None, typer.Option("--head-epochs", help="Epochs of the MIL head (default: the head config's, 40).")
]
UmapOpt = Annotated[bool, typer.Option("--umap/--no-umap", help="UMAP plots of the test cells.")]
SupervisedOpt = Annotated[
    str,
    typer.Option(
        "--supervised-config",
        help="Run config of the supervised encoder, and of the MIL model that fine-tunes an encoder (--fine-tune).",
    ),
]
FineTuneOpt = Annotated[
    bool,
    typer.Option(
        "--fine-tune",
        help="Fine-tune the encoder end to end inside the MIL model of --supervised-config instead of freezing "
        "it under a head (random: the same model from scratch).",
    ),
]


def ssl_config(config: str, method: str | None, seed: int | None, flags: ConfigFlags | None = None) -> Any:
    """The resolved pre-training config, with --method, --seed and the config flags on top."""
    from ..training.config.ssl import load_ssl_config
    from ..utils.config_files import merge_dicts

    overrides: dict[str, Any] = {}
    for key, value in (("method", method), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    cfg = load_ssl_config(config, merge_dicts(overrides, flags.overrides("ssl")) if flags else overrides)
    if flags is not None:
        flags.show(cfg)
    return cfg


def head_config(head: str, epochs: int | None, flags: ConfigFlags | None = None) -> Any:
    """The resolved head config; with --head-epochs and the config flags on top (``--set``, ``--print-config``,
    ``--epochs``)."""
    from ..training.config.head import load_head_config
    from ..utils.config_files import merge_dicts

    given = {"epochs": epochs} if epochs is not None else {}
    cfg = load_head_config(head, merge_dicts(given, flags.overrides("head") if flags else {}))
    if flags is not None:
        flags.show(cfg)
    return cfg


@ssl_app.command("pretrain")
@guarded
@data_flags
@config_flags
def ssl_pretrain_cmd(
    paths: Annotated[
        list[Path], typer.Argument(metavar="DATA", help="One or more data sets whose cells to learn from.")
    ],
    method: MethodOpt = None,
    config: SSLConfigOpt = "cpu-ssl",
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder (resumes if it holds an interrupted run).")] = Path(
        "runs/ssl"
    ),
    splits: Annotated[
        Path | None, typer.Option("--splits", help="Splits file: learn from one fold's train+val patients only.")
    ] = None,
    fold: Annotated[str | None, typer.Option("--fold", help="Fold of --splits (default: the first).")] = None,
    seed: ConfigSeedOpt = None,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    data: DataFlags = DataFlags(),
    flags: ConfigFlags = ConfigFlags(),
) -> None:
    """Pre-train a cell encoder without labels (SimCLR, SwAV or DINO): OUT/encoder.pt + encoder.json."""
    import time

    from ..data.cache import build_cache
    from ..data.splits import SplitPlan
    from ..data.validation import load_cohort

    cfg = ssl_config(config, method, seed, flags)
    if splits is not None and len(paths) != 1:
        raise ValueError("--splits restricts one data set; pass exactly one DATA with it")
    sources = []
    for path in paths:
        cohort = load_cohort(path, data.options(), progress=not quiet)
        patients = None
        if splits is not None:
            plan = SplitPlan.load(splits)
            plan.check_cohort(cohort)
            chosen = plan.fold(fold)
            patients = list(chosen.train) + list(chosen.val)
        cache = build_cache(cohort, cfg.image.preprocessing, cache_dir, progress=not quiet)
        sources.append((cache, patients, str(path), cohort.identity()))
    from ..training.ssl.pretrain import CellSource, pretrain  # after the data are checked: torch loads here

    start = time.perf_counter()
    encoder = pretrain([CellSource(*s) for s in sources], cfg, out_dir, progress=not quiet, overwrite=overwrite)
    cells = sum(s["cells"] for s in encoder.meta["sources"])
    out.print(
        f"{cfg.method.name} on {cells} cells, {cfg.epochs} epochs: final loss {encoder.meta.get('final_loss')} "
        f"({time.perf_counter() - start:.0f} s) -> {out_dir}/encoder.pt"
    )


def load_encoder_spec(spec: str) -> Any:
    """A saved encoder folder, a trained model folder, or ``random:<preset>`` for a random encoder of that
    preset's shape."""
    from ..models.cell_encoder import CellEncoder
    from ..training.trained import load_encoder

    if spec.startswith("random"):
        cfg = ssl_config(spec.partition(":")[2] or "cpu-ssl", None, None)
        return CellEncoder.random(cfg.encoder, cfg.image.preprocessing, cfg.seed)
    return load_encoder(spec)


@ssl_app.command("evaluate")
@guarded
def ssl_evaluate_cmd(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="CKPT", help="Pre-training folder (or its encoder.pt), a trained model folder, or random[:PRESET]."
        ),
    ],
    path: DataPath,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for umap.png (default: beside CKPT).")] = None,
    k: Annotated[int, typer.Option("--k", help="Neighbours of the kNN classifier.")] = 10,
    test_size: Annotated[float, typer.Option("--test-size", help="Test share of the fixed stratified split.")] = 0.3,
    seed: SeedOpt = 0,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """kNN and linear-probe accuracy of frozen features on labelled single cells, and a UMAP plot by class."""
    from ..data.cohort import CellSet
    from ..data.validation import load
    from ..evaluation.encoder_probe import evaluate_encoder

    encoder = load_encoder_spec(checkpoint)
    cells = load(path, DataOptions(), progress=not (quiet or as_json))
    if not isinstance(cells, CellSet):
        raise ValueError(f"{path} is not a single-cell data set (<class>/*.jpg with labels.csv)")
    target = out_dir or (
        Path(checkpoint).parent
        if Path(checkpoint).is_file()
        else Path(checkpoint)
        if Path(checkpoint).is_dir()
        else Path("runs/ssl-evaluate")
    )
    result = evaluate_encoder(encoder, cells, target, cache_dir, test_size, k, seed, progress=not (quiet or as_json))
    public = {key: result[key] for key in ("knn_accuracy", "linear_probe_accuracy", "n_train", "n_test")}
    if as_json:
        sys.stdout.write(json.dumps(public) + "\n")
        return
    out.print(f"kNN accuracy (k={k}): {public['knn_accuracy']:.3f}")
    out.print(f"linear-probe accuracy: {public['linear_probe_accuracy']:.3f}")
    out.print(f"train / test cells: {public['n_train']} / {public['n_test']} (chance {1 / len(cells.class_names):.3f})")
    out.print(f"UMAP -> {target / 'umap.png'}")


@features_app.command("extract")
@guarded
@data_flags
def features_extract_cmd(
    path: DataPath,
    encoder_spec: Annotated[
        str, typer.Option("--encoder", help="Pre-training folder, trained model folder, or random[:PRESET].")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Feature folder (features.npy + index.json).")] = Path(
        "runs/features"
    ),
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    accelerator: Annotated[str, typer.Option("--accelerator", help="Lightning accelerator: auto, cpu, gpu.")] = "auto",
    devices: Annotated[str, typer.Option("--devices", help="Processes (one per device) sharing the cells.")] = "1",
    strategy: Annotated[str, typer.Option("--strategy", help="auto, or ddp with --devices N.")] = "auto",
    data: DataFlags = DataFlags(),
) -> None:
    """Embed every cell of a cohort with a frozen encoder; store embeddings, cell ids and cell types per patient."""
    import torch

    from ..data.cache import build_cache
    from ..data.validation import load_cohort
    from ..models.cell_encoder import extract_features
    from ..training.trainer import start_processes

    encoder = load_encoder_spec(encoder_spec)
    cohort = load_cohort(path, data.options(), progress=not quiet)
    cache = build_cache(cohort, encoder.preprocessing, cache_dir, progress=not quiet)
    start_processes(accelerator, int(devices) if devices.isdigit() else devices, strategy)
    device = torch.device("cpu") if accelerator == "cpu" else None
    store = extract_features(encoder, cohort, cache, out_dir, progress=not quiet, overwrite=overwrite, device=device)
    out.print(f"{store.features.shape[0]} cells of {len(store.patient_ids)} patients, {store.dim}-d -> {out_dir}")


@features_app.command("cv")
@guarded
@config_flags
def features_cv_cmd(
    features: Annotated[
        Path, typer.Argument(metavar="FEATURES", help="Folder written by `smearmil features extract`.")
    ],
    head: HeadOpt = "attention",
    head_epochs: HeadEpochsOpt = None,
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (summary.json, attention.csv, ...).")] = Path(
        "runs/features-cv"
    ),
    splits: SplitsOpt = None,
    umap: UmapOpt = True,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: TableJsonOpt = False,
    flags: ConfigFlags = ConfigFlags(),
) -> None:
    """Cross-validate a MIL head on cached features: macro-F1 per fold, attention per cell and cell type."""
    from ..data.features import FeatureStore
    from ..data.splits import SplitPlan

    config = head_config(head, head_epochs, flags)
    store = FeatureStore(features)
    from ..protocols.cv import CVSettings
    from ..protocols.feature_cv import store_head_cv

    if store.encoder.get("sources") and not as_json:
        err_console.print(
            error_line(
                "this encoder was pre-trained on the cells of "
                f"{', '.join(s['data'] for s in store.encoder['sources'])}; if that includes test patients, "
                "use `smearmil ssl cv` (pre-training per fold) for an unbiased estimate",
                "note:",
                "yellow",
            )
        )
    plan = SplitPlan.load(splits) if splits else None
    settings = CVSettings(folds, seed, plan, progress=not (quiet or as_json), overwrite=overwrite)
    result = store_head_cv(store, config, out_dir, settings, umap, name=f"{head} MIL on {features.name}")
    print_head_summary(result.summary, f"{head} MIL on {features}: {folds}-fold CV (test folds)", out_dir, as_json)


def print_head_summary(summary: dict[str, Any], title: str, out_dir: Path, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    out.print(fold_table(title, summary))
    if (table := attention_table(summary)) is not None:
        out.print(table)
    out.print(f"-> {out_dir}/summary.json, predictions.csv, attention.csv ({summary['wall_seconds']:.0f} s)")


@ssl_app.command("cv")
@guarded
@data_flags
@config_flags
def ssl_cv_cmd(
    path: DataPath,
    method: Annotated[
        str,
        typer.Option("--method", help="Encoder: random, supervised, single-cell, or an SSL method (`smearmil list`)."),
    ] = "simclr",
    config: SSLConfigOpt = "cpu-ssl",
    head: HeadOpt = "attention",
    head_epochs: HeadEpochsOpt = None,
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/ssl-cv"),
    splits: SplitsOpt = None,
    supervised_config: SupervisedOpt = "cpu-attention",
    fine_tune: FineTuneOpt = False,
    umap: UmapOpt = True,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: TableJsonOpt = False,
    data: DataFlags = DataFlags(),
    flags: ConfigFlags = ConfigFlags(),
) -> None:
    """Per fold: encoder on the training patients' cells -> features -> MIL head -> test (resumable); with
    --fine-tune the encoder starts a MIL model trained end to end instead."""
    from ..data.splits import SplitPlan
    from ..data.validation import load_cohort
    from ..training.config.components import BASELINE_ENCODERS

    ssl = ssl_config(config, None if method in BASELINE_ENCODERS else method, seed, flags)
    cohort = load_cohort(path, data.options(), progress=not (quiet or as_json))
    plan = SplitPlan.load(splits) if splits else None
    from ..protocols.cv import CVSettings
    from ..protocols.ssl_cv import run_encoder_cv, run_finetune_cv

    settings = CVSettings(folds, seed, plan, cache_dir, not (quiet or as_json), overwrite)
    if fine_tune:
        found = run_finetune_cv(cohort, method, ssl, out_dir, settings, supervised_config)
        print_head_summary(
            found.summary,
            f"{method} encoder fine-tuned in {supervised_config} on {path}: {folds}-fold CV",
            out_dir,
            as_json,
        )
        return
    result = run_encoder_cv(
        cohort, method, ssl, head_config(head, head_epochs), out_dir, settings, supervised_config, umap
    )
    print_head_summary(
        result.summary, f"{method} encoder + {head} MIL on {path}: {folds}-fold CV (test folds)", out_dir, as_json
    )


@ssl_app.command("compare")
@guarded
@data_flags
@config_flags
def ssl_compare_cmd(
    path: DataPath,
    encoders: Annotated[
        str | None,
        typer.Option(
            "--encoders",
            help="Comma-separated encoders (default: random, supervised, single-cell when the cohort has cell "
            "types or --set cell_labels=DATA names a single-cell set, and every SSL method).",
        ),
    ] = None,
    config: SSLConfigOpt = "cpu-ssl",
    head: HeadOpt = "attention",
    head_epochs: HeadEpochsOpt = None,
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/ssl-compare"),
    supervised_config: SupervisedOpt = "cpu-attention",
    fine_tune: FineTuneOpt = False,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: TableJsonOpt = False,
    data: DataFlags = DataFlags(),
    flags: ConfigFlags = ConfigFlags(),
) -> None:
    """Encoders through the same MIL head on identical folds; prints macro-F1 mean and std across folds."""
    from ..data.validation import load_cohort
    from ..protocols.ssl_cv import applicable_kinds, encoder_kinds, run_encoder_comparison

    chosen = None if encoders is None else (split_list(encoders) or [])
    unknown = [k for k in chosen or [] if k not in encoder_kinds()]
    if unknown or chosen == []:
        raise ValueError(f"--encoders: unknown {unknown or 'empty list'}; choose from {', '.join(encoder_kinds())}")
    ssl = ssl_config(config, None, seed, flags)
    cohort = load_cohort(path, data.options(), progress=not (quiet or as_json))
    kinds = chosen if chosen is not None else applicable_kinds(cohort, ssl)
    if fine_tune and chosen is None:
        kinds = [k for k in kinds if k != "supervised"]  # random fine-tuned is that model trained from scratch
    result = run_encoder_comparison(
        cohort,
        kinds,
        ssl,
        head_config(head, head_epochs),
        out_dir,
        folds,
        seed,
        cache_dir,
        supervised_config,
        progress=not (quiet or as_json),
        overwrite=overwrite,
        fine_tune=fine_tune,
    )
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(title=f"encoders + {head} MIL on {path}: {folds}-fold CV (test folds)")
    for col in ("encoder", "macro-F1 mean", "macro-F1 std", "per fold"):
        table.add_column(col, justify="left" if col in ("encoder", "per fold") else "right")
    for kind, r in result["encoders"].items():
        table.add_row(
            kind,
            f"{r['macro_f1']['mean']:.3f}",
            f"{r['macro_f1']['std']:.3f}",
            " ".join(f"{v:.2f}" for v in r["folds_macro_f1"]),
        )
    out.print(table)
    out.print(f"-> {out_dir}/comparison.csv, summary.json ({result['wall_seconds']:.0f} s)")


@features_app.command("train")
@guarded
@data_flags
@config_flags
def features_train_cmd(
    path: DataPath,
    encoder_spec: Annotated[
        str, typer.Option("--encoder", help="Pre-training folder, trained model folder, or random[:PRESET].")
    ],
    head: HeadOpt = "attention",
    head_epochs: HeadEpochsOpt = None,
    seed: SeedOpt = 0,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Run folder: predictor.json, cells/ (encoder), image-expert/ (head).")
    ] = Path("runs/features-model"),
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    data: DataFlags = DataFlags(),
    flags: ConfigFlags = ConfigFlags(),
) -> None:
    """A final model of the cached-feature pipeline: a MIL head on every labelled patient's embeddings, saved
    with its encoder so `smearmil predict OUT ...` reads new patients' images through the encoder (an
    experts config with the encoder as its cells' source and the head as its image expert)."""
    from ..data.validation import load_cohort
    from ..protocols.runs import train_run
    from ..training.config.experts import head_on_cells
    from ..training.methods.feature_experts import ExpertsMethod

    config = head_config(head, head_epochs, flags)
    options = data.options()
    cohort = load_cohort(path, options, progress=not quiet)
    if encoder_spec.startswith("random"):
        cells: dict[str, Any] = {"source": "random", "ssl": encoder_spec.partition(":")[2] or "cpu-ssl"}
    else:
        load_encoder_spec(encoder_spec)  # a clear error now for a folder that holds no encoder
        cells = {"source": "encoder", "encoder": encoder_spec}
    name = f"{head} head on {Path(encoder_spec).name}"
    experts = head_on_cells(name, seed, cells, config, options.model_dump(mode="json"))
    result = train_run(
        cohort,
        ExpertsMethod(experts),
        out_dir,
        cache_dir=cache_dir,
        progress=not quiet,
        overwrite=overwrite,
        all_patients=True,
    )
    out.print(
        f"{head} head on {len(cohort.labelled())} labelled patients (encoder {encoder_spec}) -> {out_dir} "
        f"({result['wall_seconds']:.0f} s)"
    )
