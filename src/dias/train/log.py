"""Run logging: run_dir/metrics.jsonl always; TensorBoard and wandb only when asked for (imported lazily).

logger = MetricsLogger(run_dir, cfg, enabled=is_main)
logger.log({"loss": 0.41, "lr": 2e-4}, step=100)
logger.close()
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from dias.config import to_dict
from dias.errors import DiasError, WriteError
from dias.io import atomic_write_bytes
from dias.schema import Config

METRICS_FILE_NAME = "metrics.jsonl"

log = logging.getLogger(__name__)


class MetricsLogger:
    """One JSON object per call in run_dir/metrics.jsonl (appended, so a resumed run continues the file).

    `fresh=True` (a new run) starts the file empty: a run killed before its first checkpoint leaves a log
    that no checkpoint continues, and its steps would otherwise repeat in the new run's.
    """

    def __init__(self, run_dir: str | Path, cfg: Config, enabled: bool = True, fresh: bool = False):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE_NAME
        self._tensorboard = None
        self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            log.warning(
                "%s holds the log of an earlier run that no checkpoint continues; starting it afresh", self.path
            )
            atomic_write_bytes(self.path, b"")
        if cfg.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed; logging to %s only (pip install 'dias[tb]')", self.path)
            else:
                self._tensorboard = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        if cfg.log.wandb:
            import wandb  # only with log.wandb=true; a missing package is the user's error to see

            self._wandb = wandb.init(project="dias", dir=str(run_dir), config=to_dict(cfg), resume="allow")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        record = {"step": step, **metrics}
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(format_records([record]))
        except OSError as exc:  # a full disk, a file-size limit: name the file, in words
            raise WriteError(exc.errno, f"could not append to {self.path}: {exc.strerror or exc}") from exc
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if self._tensorboard is not None:
            for key, value in numbers.items():
                self._tensorboard.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


def truncate_metrics(run_dir: str | Path, step: int) -> None:
    """Drop records after `step` (logged after the checkpoint a run resumes from), so steps stay unique."""
    path = Path(run_dir) / METRICS_FILE_NAME
    if path.is_file():
        kept = [r for r in read_metrics(run_dir) if r["step"] <= step]
        atomic_write_bytes(path, format_records(kept).encode("utf-8"))


def format_records(records: list[dict[str, Any]]) -> str:
    """Records as metrics.jsonl holds them: one JSON object per line."""
    return "".join(json.dumps(record) + "\n" for record in records)


class MetricsLogError(DiasError, ValueError):
    """A metrics.jsonl line that is not a JSON record (other than a last line still being written)."""


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of run_dir/metrics.jsonl, in order.

    A last line without its newline that does not parse is a record still being written by a running
    training, and is left out; any other line that does not parse is an error naming the file and line.
    """
    path = Path(run_dir) / METRICS_FILE_NAME
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        elif number == len(lines):  # no newline after it yet: the write is in progress
            break
        else:
            raise MetricsLogError(
                f"{path}, line {number}, is not a JSON record with a step; the log is damaged: delete that line (a "
                "resumed run rewrites the log from its checkpoint's step) and run the command again"
            )
    return records
