"""Continuing a run from its last.pt: read it once, check its config, restore every part of the Run.

cfg, checkpoint = load_resume("runs/demo")
result = train(cfg, run_dir="runs/demo", resume=checkpoint)   # dias.train.loop calls restore()
"""

from __future__ import annotations

import logging
from pathlib import Path

from dias.config import CONFIG_FILE_NAME, flatten, from_dict, load_config, to_dict
from dias.errors import DiasError, MissingFileError, UsageError
from dias.schema import Config
from dias.train.checkpoint import (
    LAST,
    check_compatible,
    config_from_checkpoint,
    defines_model,
    load_checkpoint,
    load_trainable_state,
)
from dias.train.log import truncate_metrics
from dias.train.state import Run, restore_rng

log = logging.getLogger(__name__)


def load_resume(
    run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), config: str | Path | None = None
) -> tuple[Config, dict]:
    """(config, checkpoint) to continue run_dir from its last.pt, which is read once, here.

    The config is the checkpoint's (or the YAML `config`), with `overrides`; one that changes the model is
    refused with CheckpointError. Pass both to `train(cfg, run_dir, resume=checkpoint)`.
    """
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise UsageError(f"--resume takes a run folder, not a file: pass --resume {run_dir.parent}")
    path = run_dir / LAST
    if not path.is_file():
        raise MissingFileError(
            f"{run_dir} holds no {LAST}, so it is not a run of `dias train` that can be resumed; "
            "pass --resume the folder a run wrote, or start a new run with --config FILE"
        )
    checkpoint = load_checkpoint(path)
    return config_from_checkpoint(checkpoint["config"], path, config=config, overrides=overrides), checkpoint


def restore(run: Run, checkpoint: dict) -> None:
    """Continue from last.pt: trainable weights, optimizer, grad scaler, step, best, data position, RNG states."""
    cfg, path = run.cfg, run.run_dir / LAST
    saved = from_dict(checkpoint["config"])
    check_compatible(saved, cfg, path)  # a no-op after load_resume; guards a hand-made cfg
    if run.dist_info.is_main and saved.train.total_steps != cfg.train.total_steps:
        log.warning(
            "train.total_steps changes from %d (in %s) to %d: the LR schedule (warm-up, cosine decay) and "
            "the method's schedules (dias.methods) are now spread over %d steps, "
            "so from step %d on they differ from those of an uninterrupted run of either length",
            saved.train.total_steps, path, cfg.train.total_steps, cfg.train.total_steps, checkpoint["step"],
        )  # fmt: skip
    load_trainable_state(run.model, checkpoint["model"], path)
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    run.step, run.best = checkpoint["step"], checkpoint["best_fg_ari"]
    run.epoch, run.consumed = checkpoint["data"]["epoch"], checkpoint["data"]["batches"]
    restore_rng(checkpoint["rng"], run.dist_info, fallback_seed=cfg.train.seed + run.step)
    if run.dist_info.is_main:
        truncate_metrics(run.run_dir, run.step)
        log.info("resumed %s at step %d (epoch %d, batch %d)", run.run_dir, run.step, run.epoch, run.consumed)
        _warn_of_hand_edits(run.run_dir / CONFIG_FILE_NAME, saved, cfg)


def _warn_of_hand_edits(path: Path, saved: Config, cfg: Config) -> None:
    """Warn, naming the keys, when the run's config.yaml holds values that neither last.pt nor `cfg` has.

    A resumed run takes its config from last.pt and the command's overrides, and then rewrites config.yaml:
    an edit made to the file by hand would otherwise vanish without a word.
    """
    if not path.is_file():
        return
    try:
        on_disk = flatten(to_dict(load_config(path)))
    except DiasError as exc:
        log.warning("%s cannot be read (%s); it is rewritten from %s", path, exc, LAST)
        return
    kept, used = flatten(to_dict(saved)), flatten(to_dict(cfg))
    edits = [
        f"{key}={on_disk[key]!r}" for key in on_disk if on_disk[key] != kept.get(key) and on_disk[key] != used.get(key)
    ]
    model_edits = [edit for edit in edits if defines_model(edit.partition("=")[0], saved)]
    edits = [edit for edit in edits if edit not in model_edits]
    if edits:
        log.warning(
            "%s was edited by hand (%s); a resumed run takes its config from %s and the command's key=value "
            "overrides, so these edits are replaced: pass them as overrides, e.g. `dias train --resume %s %s`",
            path, ", ".join(edits), LAST, path.parent, " ".join(edit.replace("'", "") for edit in edits),
        )  # fmt: skip
    if model_edits:
        log.warning(
            "%s was edited by hand (%s), but these keys define the model, whose weights %s holds: a resume "
            "keeps them as they were; start a new run (dias train --config ...) to train another model",
            path, ", ".join(model_edits), LAST,
        )  # fmt: skip
