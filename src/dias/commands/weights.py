"""`dias weights`: get named backbone weights into the user's cache, and show what is there.

dias weights get dinov2-vits14 [--from FILE]   # stored once; later runs find it (model.backbone.weights=NAME)
dias weights list                              # every name: stored or not, where, from what source
dias weights path dinov2-vits14                # the stored file, for scripts
"""

from __future__ import annotations

import os
from pathlib import Path

from dias.errors import MissingFileError, UsageError
from dias.schema import NAMED_WEIGHTS
from dias.weights import store
from dias.weights.get import get_weights


def run_get(name: str, source: str | os.PathLike | None = None) -> str:
    """Fetch (or convert from `source`) and store `name`; the lines to print: where, from what, the caveat."""
    _check_name(name)
    was_stored = source is None and store.stored(name) is not None
    path = get_weights(name, source=source)
    card = store.read_card(name) or {}
    origin = card.get("source", {})
    status = "already stored" if was_stored else "stored"
    return "\n".join([
        f"{name}: {status} in {path} ({card.get('bytes', 0) / 2**20:.1f} MiB, {card.get('dtype')})",
        f"source: {origin.get('kind')}; licence: {origin.get('licence')}",
        f"note: {origin.get('caveat')}",
        f"use it with model.backbone.name={NAMED_WEIGHTS[name]} model.backbone.weights={name}",
    ])  # fmt: skip


def run_list() -> str:
    """One line per named weight: stored (with size and source) or not, and the store's folder."""
    lines = [f"weights store: {store.weights_home() / store.WEIGHTS_FOLDER} (set {store.HOME_ENV} to move it)"]
    for name, backbone in NAMED_WEIGHTS.items():
        card = store.read_card(name)
        if card is None:
            lines.append(f"{name} ({backbone}): not stored; `dias weights get {name}` fetches it")
        else:
            size = card.get("bytes", 0) / 2**20
            source = card.get("source", {}).get("kind")
            lines.append(f"{name} ({backbone}): {store.folder(name) / store.MODEL_FILE}, {size:.1f} MiB, from {source}")
    return "\n".join(lines)


def run_path(name: str) -> Path:
    """The stored (and checked) file of `name`; a MissingFileError naming the command that gets it."""
    _check_name(name)
    path = store.stored(name)
    if path is None:
        raise MissingFileError(f"{name} is not stored in {store.folder(name)}; run `dias weights get {name}`")
    return path


def _check_name(name: str) -> None:
    if name not in NAMED_WEIGHTS:
        raise UsageError(f"no weights named {name!r}; choose one of {', '.join(NAMED_WEIGHTS)}")
