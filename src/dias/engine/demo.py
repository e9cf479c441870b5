"""`dias demo`: generate the synthetic dataset if missing, train configs/demo.yaml on CPU, evaluate, report.

    summary = run_demo(out_dir="runs/demo", minutes=10)
    summary["metrics"]  # {"ari", "fg_ari", "mbo", "miou"} on the synthetic val split

The demo config ships inside the package (dias/configs/demo.yaml, a copy of configs/demo.yaml that a test
keeps identical), so the command also works from a non-editable install.

The demo replaces only a run it made itself: after training it records the SHA-256 of its last.pt in
RUN_DIR/demo.json, and a later demo replaces the folder's run only while last.pt still matches. Any other
run there (a `dias train` run, a demo run resumed or changed since) is refused unless `overwrite=True`.
"""

from __future__ import annotations

import json
import logging
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from dias.config import CONFIG_FILE_NAME, load_config
from dias.data.records import split_path
from dias.engine.evaluate import run_eval
from dias.engine.gallery import REPORT_FILE_NAME
from dias.engine.log import METRICS_FILE_NAME
from dias.engine.runlock import RunLock
from dias.engine.train import BEST, LAST, train
from dias.errors import FileInTheWayError
from dias.io import atomic_write_bytes, file_sha256

DEMO_CONFIG = "demo.yaml"
EVAL_DIR_NAME = "eval-val"
NUM_VIZ_IMAGES = 8
MARKER_FILE_NAME = "demo.json"  # {"made_by": "dias demo", "last_sha256": ..., "step": ...}
MADE_BY = "dias demo"
RUN_FILES = (LAST, BEST, METRICS_FILE_NAME, EVAL_DIR_NAME, CONFIG_FILE_NAME)  # what a run leaves in its folder

log = logging.getLogger(__name__)


def demo_config_path() -> Path:
    """The demo config shipped in the package."""
    return Path(str(resources.files("dias.configs").joinpath(DEMO_CONFIG)))


def run_demo(
    out_dir: str | Path | None = None,
    minutes: float | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train and evaluate the demo; returns {"run_dir", "metrics", "baselines", "report", "status", "step"}.

    "metrics" and each of "baselines" (see dias.baselines) map metric names to fractions (None: no score).

    `minutes` caps the training time: training stops there (checkpointed) and the last weights are scored.
    Ctrl-C or SIGTERM stops training (checkpointed) and the demo with it: "status" is "interrupted" or
    "terminated", nothing is scored ("metrics" and "baselines" are None) and no marker is written, so a
    later demo leaves that run alone. An earlier demo run in the same folder is replaced; any other run
    there raises FileExistsError unless `overwrite`.
    """
    cfg = load_config(demo_config_path(), overrides)
    run_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)
    root = Path(cfg.data.root)
    if not (split_path(root, cfg.data.train_split).exists() and split_path(root, cfg.data.val_split).exists()):
        from dias.data.synthetic import prepare_synthetic

        log.info("generating the synthetic dataset in %s (once)", root)
        prepare_synthetic(root, progress=progress)
    with RunLock(run_dir):  # no other process may write the folder while it is replaced
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
        result = train(cfg, run_dir, time_limit=None if minutes is None else minutes * 60, progress=progress)
        summary = {"run_dir": str(run_dir), "status": result.status, "step": result.step, "report": None}
        if result.stopped_by_signal:  # the user (or the scheduler) asked to stop: no marker, no evaluation
            return {**summary, "metrics": None, "baselines": None}
        marker = {"made_by": MADE_BY, "last_sha256": file_sha256(run_dir / LAST), "step": result.step}
        atomic_write_bytes(run_dir / MARKER_FILE_NAME, json.dumps(marker).encode("utf-8"))
        report = run_eval(run_dir / LAST, out_dir=run_dir / EVAL_DIR_NAME, viz=NUM_VIZ_IMAGES, progress=progress)
    summary["metrics"] = report["metrics"]
    summary["baselines"] = report["baselines"]
    html = run_dir / EVAL_DIR_NAME / REPORT_FILE_NAME
    summary["report"] = str(html) if html.exists() else report["path"]
    return summary


def holds_run(run_dir: Path) -> bool:
    """Whether anything a run writes is in run_dir."""
    return any((run_dir / name).exists() for name in RUN_FILES)


def made_by_demo(run_dir: Path) -> bool:
    """Whether run_dir's run is one the demo finished training, unchanged since (its last.pt as recorded)."""
    try:
        marker = json.loads((run_dir / MARKER_FILE_NAME).read_text(encoding="utf-8"))
        return marker["made_by"] == MADE_BY and marker["last_sha256"] == file_sha256(run_dir / LAST)
    except (OSError, ValueError, KeyError, TypeError):  # no marker, no last.pt, or not our JSON
        return False
