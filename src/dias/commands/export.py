"""`dias export`: a checkpoint's trained weights as one safetensors file that carries its config.

export_weights("runs/demo/last.pt", "demo.safetensors")
model, cfg = load_model("demo.safetensors")  # dias.train.checkpoint reads it back
"""

from __future__ import annotations

import json
from pathlib import Path

from dias.config import to_dict
from dias.errors import UsageError
from dias.io import SAFETENSORS_SUFFIX, atomic_write_bytes, safetensors_bytes
from dias.train.checkpoint import EXPORT_FORMAT, load_model, model_state
from dias.version import __version__


def export_weights(checkpoint: str | Path, out: str | Path, *, config: str | Path | None = None) -> Path:
    """Write a checkpoint's trained weights, without the frozen backbone, as safetensors with its config.

    The config travels in the file's metadata, so `load_model(out)` (or `dias.load(out)`) rebuilds the
    model; the backbone comes from its own weights file (model.backbone.weights). `config`: the YAML of an
    official release checkpoint, which holds no config of its own.
    """
    out = Path(out)
    if out.suffix != SAFETENSORS_SUFFIX:
        raise UsageError(f"the exported weights file must end in {SAFETENSORS_SUFFIX}, got {out}")
    model, cfg = load_model(checkpoint, config=config)
    metadata = {"format": EXPORT_FORMAT, "dias_version": __version__, "config": json.dumps(to_dict(cfg))}
    atomic_write_bytes(out, safetensors_bytes(model_state(model), metadata=metadata))
    return out
