"""`dias demo`: generate the synthetic dataset if missing, train configs/demo.yaml on CPU, evaluate, report.

    summary = run_demo(out_dir="runs/demo", minutes=10)
    summary["metrics"]  # {"ari", "fg_ari", "mbo", "miou"} on the synthetic val split

The demo config ships inside the package (dias/configs/demo.yaml, a copy of configs/demo.yaml that a test
keeps identical), so the command also works from a non-editable install.
"""

from __future__ import annotations

import logging
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from dias.config import load_config
from dias.data.dataset import split_path
from dias.engine.evaluate import run_eval
from dias.engine.train import BEST, LAST, train

DEMO_CONFIG = "demo.yaml"
EVAL_DIR_NAME = "eval-val"
NUM_VIZ_IMAGES = 8

log = logging.getLogger(__name__)


def demo_config_path() -> Path:
    """The demo config shipped in the package."""
    return Path(str(resources.files("dias.configs").joinpath(DEMO_CONFIG)))


def run_demo(
    out_dir: str | Path | None = None,
    minutes: float | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate the demo; returns {"run_dir", "metrics", "baselines", "report", "status", "step"}.

    "metrics" and each of "baselines" (see dias.baselines) map metric names to fractions (None: no score).

    `minutes` caps the training time: training stops there (checkpointed) and the last weights are scored.
    An earlier demo run in the same folder is replaced.
    """
    cfg = load_config(demo_config_path(), overrides)
    run_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)
    root = Path(cfg.data.root)
    if not (split_path(root, cfg.data.train_split).exists() and split_path(root, cfg.data.val_split).exists()):
        from dias.data.synthetic import prepare_synthetic

        log.info("generating the synthetic dataset in %s (once)", root)
        prepare_synthetic(root, progress=progress)
    for name in (LAST, BEST, "metrics.jsonl", EVAL_DIR_NAME):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    result = train(cfg, run_dir, time_limit=None if minutes is None else minutes * 60, progress=progress)
    summary = {"run_dir": str(run_dir), "status": result.status, "step": result.step, "report": None}
    report = run_eval(None, run_dir / LAST, [], run_dir / EVAL_DIR_NAME, viz=NUM_VIZ_IMAGES, progress=progress)
    summary["metrics"] = report["metrics"]
    summary["baselines"] = report["baselines"]
    html = run_dir / EVAL_DIR_NAME / "report.html"
    summary["report"] = str(html) if html.exists() else report["path"]
    return summary
