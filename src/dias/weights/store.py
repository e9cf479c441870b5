"""The weights store: converted backbone weights, written once into the user's cache, with a provenance card.

    weights_home()                       # $DIAS_HOME, else $XDG_CACHE_HOME/dias, else ~/.cache/dias
    folder("dinov2-vits14")              # HOME/weights/dinov2-vits14/: model.safetensors and card.json
    save("dinov2-vits14", state, card)   # atomic writes: the weights, then the card that vouches for them
    stored("dinov2-vits14")              # the weights' path when the card is there and its sha256 matches

The card is written last, so a folder with weights and no card (a write stopped half-way) counts as empty.
The weights are float32, as in every source: a float16 copy would halve the 88 MB, but LayerScale factors
as small as 1e-5 are float16 subnormals, and a float32 copy is the source's values exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from dias.errors import DamagedFileError
from dias.io import atomic_write_bytes, file_sha256, safetensors_bytes

HOME_ENV = "DIAS_HOME"
XDG_CACHE_ENV = "XDG_CACHE_HOME"
DEFAULT_CACHE = Path("~/.cache")
WEIGHTS_FOLDER = "weights"
MODEL_FILE = "model.safetensors"
CARD_FILE = "card.json"
DTYPE = torch.float32

_checked: dict[Path, tuple] = {}  # stored weights whose hash matched their card, by (sha256, inode, size, mtime)


def weights_home() -> Path:
    """Where dias keeps what it downloads: $DIAS_HOME, else $XDG_CACHE_HOME/dias, else ~/.cache/dias."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    cache = os.environ.get(XDG_CACHE_ENV) or DEFAULT_CACHE
    return Path(cache).expanduser() / "dias"


def folder(name: str) -> Path:
    return weights_home() / WEIGHTS_FOLDER / name


def read_card(name: str) -> dict[str, Any] | None:
    """The provenance card of stored weights, or None when there are none."""
    path = folder(name) / CARD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DamagedFileError(f"cannot read {path} ({exc}); {_refetch(name)}") from None


def stored(name: str) -> Path | None:
    """The stored weights of `name`, checked against their card's sha256; None when none are stored.

    The check reads the whole file once per process and again only when the file's size, time or inode change.
    """
    card = read_card(name)
    model = folder(name) / MODEL_FILE
    if card is None or not model.is_file():
        return None
    status = model.stat()
    signature = (card.get("sha256"), status.st_ino, status.st_size, status.st_mtime_ns)
    if _checked.get(model) == signature:
        return model
    if file_sha256(model) != card.get("sha256"):
        raise DamagedFileError(f"{model} does not match the sha256 on its card: changed or damaged; {_refetch(name)}")
    _checked[model] = signature
    return model


def save(name: str, state: dict[str, torch.Tensor], card: dict[str, Any]) -> Path:
    """Write `state` (as float32) and `card` (plus the weights' sha256, dtype and size) into folder(name).

    Nothing partial is left on a failure, a full disk included: when the weights cannot be written, a
    previous pair stays as it was; when the card cannot, both files go (the card vouches for the weights,
    so it is written last).
    """
    target = folder(name)
    state = {k: v.to(DTYPE).contiguous() for k, v in state.items()}
    blob = safetensors_bytes(state, {"name": name, "source": card["source"]["kind"]})
    model, card_path = target / MODEL_FILE, target / CARD_FILE
    digest = hashlib.sha256(blob).hexdigest()
    card = {
        **card,
        "file": MODEL_FILE,
        "sha256": digest,
        "dtype": str(DTYPE).removeprefix("torch."),
        "bytes": len(blob),
    }
    atomic_write_bytes(model, blob)
    try:
        atomic_write_bytes(card_path, (json.dumps(card, indent=2) + "\n").encode())
    except BaseException:
        model.unlink(missing_ok=True)
        card_path.unlink(missing_ok=True)
        raise
    return model


def _refetch(name: str) -> str:
    return f"remove {folder(name)} and run `dias weights get {name}` again"
