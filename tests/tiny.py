"""The test suite's one tiny demo model and run, shared by every test that trains or evaluates one.

    from tiny import TINY, tiny_config   # tests/ is on sys.path through tests/conftest.py
    cfg = tiny_config(tiny_root, "train.total_steps=2")   # tiny_root: the session dataset of conftest.py
    signal_after_adam(monkeypatch, [signal.SIGTERM], at=0)  # as if SIGTERM came during the first step

A test that needs another size or model passes its overrides after TINY; later overrides win.
"""

from __future__ import annotations

import signal
from pathlib import Path

import dias.train.loop as train_module
from dias.config import load_config
from dias.schema import Config

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
TINY = [
    "model.slot_dim=32",
    "model.slot_attention.mlp_dim=64",
    "data.image_size=32",
    "model.backbone.patch_size=8",  # 32 px -> a 4x4 token grid
    "data.batch_size=4",
    "data.num_workers=0",
    "train.device=cpu",
    "log.every=1",
    "log.tensorboard=false",
]
TINY_DATA = {"num_train": 16, "num_val": 4, "size": 32}  # tiny_root: 4 batches of 4 per epoch
# a video config's overrides on tiny_video_root: a stand-in backbone on 32 px frames (a 4x4 token grid), small
# widths; synthetic-video pads to K = 6 objects
TINY_VIDEO = [
    "data.name=synthetic_video", "model.num_slots=6", "data.image_size=32", "model.backbone.name=patch_stats",
    "model.backbone.patch_size=8", "model.slot_dim=32", "model.slot_attention.mlp_dim=64", "model.decoder.num_layers=1",
    "data.clip_length=3", "data.batch_size=2", "data.num_workers=0", "eval.batch_size=2", "train.device=cpu",
    "eval.device=cpu", "log.every=1", "log.tensorboard=false", "train.precision=fp32",
]  # fmt: skip


def tiny_config(root: Path | str | None, *overrides: str) -> Config:
    """The demo config with TINY, data.root=root (when given) and `overrides` applied."""
    root_override = [] if root is None else [f"data.root={root}"]
    return load_config(DEMO_CONFIG, [*TINY, *root_override, *overrides])


def signal_after_adam(monkeypatch, signums: list[int], at: int) -> None:
    """Deliver `signums` to this process right after the optimizer step of step `at`, before the loop counts it."""
    real = train_module.optimisation_step
    calls = []

    def signalled(*args, **kwargs):
        stats = real(*args, **kwargs)
        if len(calls) == at:
            for signum in signums:
                signal.raise_signal(signum)
        calls.append(1)
        return stats

    monkeypatch.setattr(train_module, "optimisation_step", signalled)
