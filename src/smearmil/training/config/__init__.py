"""Every kind of config in one place, each a pydantic schema loaded through ``utils.config_files``:
``run`` (deep MIL), ``experts`` (experts on cell features and attributes, with their fusion), ``baseline``,
``head`` (a MIL head on cached features), ``ssl`` (pre-training) and ``compare``; a config's ``kind`` says
which. ``run``'s names are re-exported here (``training.config.RunConfig``)."""

from .run import (
    PAPER,
    PAPER_HINT,
    PAPER_ROWS,
    RUN_FLAG_PATHS,
    THRESHOLD_HELP,
    AugmentConfig,
    ImageConfig,
    MethodConfig,
    RunConfig,
    SplitConfig,
    StageConfig,
    Strict,
    Threshold,
    TrainConfig,
    load_config,
    paper_preset,
    paper_row_names,
    threshold_rule,
)

__all__ = [
    "PAPER",
    "PAPER_HINT",
    "PAPER_ROWS",
    "RUN_FLAG_PATHS",
    "THRESHOLD_HELP",
    "AugmentConfig",
    "ImageConfig",
    "MethodConfig",
    "RunConfig",
    "SplitConfig",
    "StageConfig",
    "Strict",
    "Threshold",
    "TrainConfig",
    "load_config",
    "paper_preset",
    "paper_row_names",
    "threshold_rule",
]
