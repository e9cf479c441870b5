"""`dias train`: a new run from a config, or a resumed one (the loop itself is dias.train.loop)."""

from __future__ import annotations

from pathlib import Path

from dias.config import load_config
from dias.errors import FileInTheWayError
from dias.train.checkpoint import LAST
from dias.train.loop import TrainResult, train
from dias.train.resume import load_resume


def run_train(
    config: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    resume_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
) -> TrainResult:
    """`dias train`: a new run from a config (refusing a folder that already holds one), or a resumed run.

    A resumed run uses the checkpoint's config, or `config` when given; either way with `overrides`, and
    either way it must define the same model as the checkpoint.
    """
    if resume_dir is not None:
        cfg, checkpoint = load_resume(resume_dir, overrides, config)
        return train(cfg, resume_dir, resume=checkpoint)
    cfg = load_config(config, overrides)
    run_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)
    if (run_dir / LAST).exists():
        raise FileInTheWayError(
            f"{run_dir} already holds a run; continue it with `dias train --resume {run_dir}` or pass another --out"
        )
    return train(cfg, run_dir)
