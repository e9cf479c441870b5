"""`dias demo`: the bundled demo model on the synthetic data, and a check that a fresh training follows it.

    summary = run_demo(out_dir="runs/demo")
    summary["bundled"]["metrics"]   # {"ari", "fg_ari", "mbo", "miou"} of the bundled model on the val split
    summary["check"].verdict        # "your training follows the reference run: ..." or "it does not: ..."

In order: make the synthetic dataset (or reuse it), evaluate the bundled model (dias/demo_model/, trained
by scripts/train_demo_model.sh) on the val split with the baselines and a visual report, then train a
fresh model from scratch for a time budget with the bundled model's config and compare its logged loss
and validation metrics with the reference runs' logs at the same steps (dias.demo.follow). `key=value`
overrides apply to the fresh training only, so `dias demo optim.lr=1e-9` shows the check fail.

Everything is written inside OUT: OUT/data (the dataset, unless `data_dir` names another), OUT/bundled
(the bundled model's scores and report.html) and OUT/fresh (the fresh run, with check.json and check.md).
The demo replaces only a fresh run it made itself: after training (finished or stopped by a signal) it records
the SHA-256 of its last.pt in OUT/fresh/demo.json, and a later demo replaces that run only while last.pt still
matches. Any other run
there (a `dias train` run, a demo run resumed or changed since) is refused unless `overwrite=True`.
"""

from __future__ import annotations

import json
import logging
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from dias.commands.evaluate import run_eval
from dias.config import CONFIG_FILE_NAME
from dias.data.records import load_header, split_path
from dias.demo.follow import FollowCheck, compare_to_reference
from dias.demo.reference import Reference, fresh_config, load_reference
from dias.errors import FileInTheWayError, UsageError
from dias.io import atomic_write_bytes, file_sha256
from dias.runtime.lock import FolderLock
from dias.train.checkpoint import BEST, LAST
from dias.train.log import METRICS_FILE_NAME, read_metrics
from dias.train.loop import train
from dias.train.window import NonFiniteLossError
from dias.viz.gallery import REPORT_FILE_NAME

DEMO_CONFIG = "demo.yaml"
DEFAULT_OUT_DIR = Path("runs/demo")
DATA_DIR_NAME, BUNDLED_DIR_NAME, FRESH_DIR_NAME = "data", "bundled", "fresh"
DEFAULT_MINUTES = 7.0  # of fresh training: with data, evaluation and start-up the demo ends within 10 minutes
NUM_VIZ_IMAGES = 8
MARKER_FILE_NAME = "demo.json"  # {"made_by": "dias demo", "last_sha256": ..., "step": ..., "status": ...}
CHECK_FILE_NAME, CHECK_TABLE_NAME = "check.json", "check.md"
MADE_BY = "dias demo"
RUN_FILES = (LAST, BEST, METRICS_FILE_NAME, CONFIG_FILE_NAME, CHECK_FILE_NAME, CHECK_TABLE_NAME)  # a run's own
MODES = ("all", "eval", "train")

log = logging.getLogger(__name__)


def demo_config_path() -> Path:
    """The demo config shipped in the package (the bundled model was trained with it)."""
    return Path(str(resources.files("dias.configs").joinpath(DEMO_CONFIG)))


def run_demo(
    out_dir: str | Path | None = None,
    minutes: float | None = DEFAULT_MINUTES,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    mode: str = "all",
    data_dir: str | Path | None = None,
    reference: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate the bundled model and/or check a fresh training against it; returns a summary.

    {"out_dir", "bundled": {"metrics", "baselines", "report"} or None, "fresh": {"run_dir", "status", "step"}
    or None, "check": FollowCheck or None}. `mode` is "all", "eval" (the bundled model only) or "train" (the
    fresh training and its check only). `minutes` (None: no limit) and `max_steps` cap the fresh training.
    Ctrl-C or SIGTERM stops the fresh training (checkpointed): its "status" is "interrupted" or
    "terminated" and no check is made; the marker is written, so a later demo starts that run afresh.
    """
    if mode not in MODES:
        raise UsageError(f"unknown demo mode {mode!r}; use one of {', '.join(MODES)}")
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR
    ref = load_reference(reference)
    data_root = Path(data_dir) if data_dir is not None else out_dir / DATA_DIR_NAME
    ensure_data(data_root, ref, progress=progress)
    summary: dict[str, Any] = {"out_dir": str(out_dir), "bundled": None, "fresh": None, "check": None}
    if mode in ("all", "eval"):
        summary["bundled"] = evaluate_bundled(ref, data_root, out_dir / BUNDLED_DIR_NAME, progress=progress)
    if mode in ("all", "train"):
        fresh, check = train_and_check(
            ref, data_root, out_dir / FRESH_DIR_NAME, overrides, minutes=minutes, max_steps=max_steps,
            progress=progress, overwrite=overwrite,
        )  # fmt: skip
        summary["fresh"], summary["check"] = fresh, check
    return summary


def ensure_data(root: Path, ref: Reference, progress: bool = True) -> None:
    """Generate the synthetic dataset in `root` unless both of the reference config's splits are there."""
    from dias.data import synthetic

    splits = (ref.config.data.train_split, ref.config.data.val_split)
    if all(split_path(root, split).exists() for split in splits):
        _warn_unless_demo_data(root, splits)
        return
    log.info("generating the synthetic dataset in %s (once)", root)
    synthetic.prepare_synthetic(root, progress=progress)


def _warn_unless_demo_data(root: Path, splits: tuple[str, str]) -> None:
    """Warn about a split that `dias prepare synthetic` with its defaults (what the reference used) did not write."""
    from dias.data import synthetic

    defaults = {"generator_version": synthetic.GENERATOR_VERSION, "seed": synthetic.DEFAULT_SEED}
    defaults |= {"size": synthetic.DEFAULT_SIZE}
    counts = (synthetic.DEFAULT_NUM_TRAIN, synthetic.DEFAULT_NUM_VAL)
    for split, count in zip(splits, counts, strict=True):
        header = load_header(split_path(root, split))
        if header.get("dataset") != synthetic.DATASET_NAME or header.get("info") != defaults | {"num_images": count}:
            log.warning(
                "%s is not the demo's dataset (`dias prepare synthetic` with its defaults: %d and %d images of %d px, "
                "seed %d) but %s %s: the scores and the check do not compare with the reference's",
                split_path(root, split), *counts, synthetic.DEFAULT_SIZE, synthetic.DEFAULT_SEED,
                header.get("dataset"), header.get("info"),
            )  # fmt: skip


def evaluate_bundled(ref: Reference, data_root: Path, out: Path, progress: bool = True) -> dict[str, Any]:
    """Score the bundled weights on the val split with the baselines; write OUT/metrics.json and report.html."""
    report = run_eval(
        ref.weights, overrides=[f"data.root={data_root}"], out_dir=out, viz=NUM_VIZ_IMAGES, progress=progress
    )
    html = out / REPORT_FILE_NAME
    return {
        "metrics": report["metrics"],
        "baselines": report["baselines"],
        "report": str(html) if html.exists() else report["path"],
    }


def train_and_check(
    ref: Reference,
    data_root: Path,
    run_dir: Path,
    overrides: list[str] | tuple[str, ...],
    *,
    minutes: float | None,
    max_steps: int | None,
    progress: bool,
    overwrite: bool,
) -> tuple[dict[str, Any], FollowCheck | None]:
    """Train the reference config (+ overrides) from scratch in run_dir, then compare its log with the reference's."""
    cfg = fresh_config(ref, overrides, data_root)
    with FolderLock(run_dir):  # no other process may write the folder while it is replaced
        if holds_run(run_dir) and not made_by_demo(run_dir):
            if not overwrite:
                raise FileInTheWayError(
                    f"{run_dir} holds a run that `dias demo` did not make (or one changed since it made it); "
                    f"continue it with `dias train --resume {run_dir}`, pass another --out, or pass --overwrite "
                    "to replace it"
                )
            log.warning("--overwrite: replacing the run in %s", run_dir)
        for name in (*RUN_FILES, MARKER_FILE_NAME):
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        time_limit = None if minutes is None else minutes * 60
        try:
            result = train(cfg, run_dir, time_limit=time_limit, max_steps=max_steps, progress=progress)
        except NonFiniteLossError as exc:  # a verdict too: this training does not follow the reference
            _mark_as_demos(run_dir, step=None, status="diverged")
            check = FollowCheck(diverged=str(exc), last_step=_last_step(run_dir))
            _write_check(run_dir, check)
            return {"run_dir": str(run_dir), "status": "diverged", "step": check.last_step}, check
        check = compare_to_reference(read_metrics(run_dir), ref.logs)
        if not result.stopped_by_signal and check.follows is None and max_steps is None and time_limit is not None:
            log.warning(
                "the %.3g-minute budget ended at step %d, before the first comparison at step %d: this machine is "
                "slower or busier than the demo expects; training on to step %d without a time limit",
                minutes, result.step, check.first_comparable_step, check.first_comparable_step,
            )  # fmt: skip
            result = train(cfg, run_dir, resume=True, max_steps=check.first_comparable_step, progress=progress)
            check = compare_to_reference(read_metrics(run_dir), ref.logs)
        fresh = {"run_dir": str(run_dir), "status": result.status, "step": result.step}
        _mark_as_demos(run_dir, step=result.step, status=result.status)  # even when stopped: the next demo replaces it
        if result.stopped_by_signal:  # the user (or the scheduler) asked to stop: no check
            return fresh, None
        _write_check(run_dir, check)
    return fresh, check


def _mark_as_demos(run_dir: Path, *, step: int | None, status: str) -> None:
    """Record that the demo made the run in run_dir, with its last.pt's SHA-256 (None: no last.pt was written)."""
    last = run_dir / LAST
    marker = {"made_by": MADE_BY, "last_sha256": file_sha256(last) if last.is_file() else None, "step": step}
    marker["status"] = status
    atomic_write_bytes(run_dir / MARKER_FILE_NAME, json.dumps(marker).encode("utf-8"))


def _write_check(run_dir: Path, check: FollowCheck) -> None:
    atomic_write_bytes(run_dir / CHECK_FILE_NAME, (json.dumps(check.to_json(), indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(run_dir / CHECK_TABLE_NAME, (check.table() + "\n\n" + check.verdict + "\n").encode("utf-8"))


def _last_step(run_dir: Path) -> int:
    """The last step the run in run_dir logged (0 before its first record)."""
    try:
        return max((record["step"] for record in read_metrics(run_dir)), default=0)
    except (OSError, ValueError):
        return 0


def holds_run(run_dir: Path) -> bool:
    """Whether anything a run writes is in run_dir."""
    return any((run_dir / name).exists() for name in RUN_FILES)


def made_by_demo(run_dir: Path) -> bool:
    """Whether run_dir's run is one the demo finished training, unchanged since (its last.pt as recorded)."""
    try:
        marker = json.loads((run_dir / MARKER_FILE_NAME).read_text(encoding="utf-8"))
        if marker["last_sha256"] is None:  # a run that diverged before its first checkpoint
            return marker["made_by"] == MADE_BY and not (run_dir / LAST).exists()
        return marker["made_by"] == MADE_BY and marker["last_sha256"] == file_sha256(run_dir / LAST)
    except (OSError, ValueError, KeyError, TypeError):  # no marker, no last.pt, or not our JSON
        return False
