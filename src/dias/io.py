"""Files: atomic writes, content hashes and state-dict reading, each rule in one place.

atomic_write_bytes(run_dir / "metrics.json", data)     # temporary file beside it, fsync, rename
atomic_write(path, lambda f: torch.save(payload, f))
file_sha256(path)                                      # hex digest, read in 1 MiB chunks
blob = safetensors_bytes(state, metadata)              # the same tensors and metadata give the same bytes
state = read_state_dict("dinov2.safetensors")          # .safetensors or .pth, unwrapped
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dias.errors import DiasError, UsageError, WriteError

TEMP_SUFFIX = ".tmp"  # atomic_write's temporary files are .NAME.XXXXXXXX.tmp beside NAME
SAFETENSORS_SUFFIX = ".safetensors"
# Dicts that wrap a state dict in checkpoints of other code bases (Lightning, timm, the release).
STATE_DICT_WRAPPERS = ("state_dict", "model")
HASH_CHUNK_BYTES = 1 << 20
LOW_SPACE = 16 << 20  # with less free than this after a failed write, the disk is taken to be full

if TYPE_CHECKING:
    import torch


class WeightsMismatchError(DiasError, ValueError):
    """A weights file does not fit the model (missing, unexpected or wrongly shaped entries), or is unreadable."""


def _read_umask() -> int:
    """The process umask, read once at import.

    Linux reports it in /proc/self/status; elsewhere it can only be read by setting it, which this does
    once here, before any thread of ours writes a file, instead of around every write.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            match = re.search(r"^Umask:\s*([0-7]+)$", f.read(), re.MULTILINE)
        if match:
            return int(match.group(1), 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a temporary file in the same folder, then rename it over `path`."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call `write(file)` on a temporary file beside `path`, fsync, then rename it to `path`.

    On any failure (a full disk included) the temporary file is removed and `path` keeps its old content;
    a WriteError says which file could not be written and why.
    """
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc, kept=existed) from exc
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = _os_error_in(exc) if isinstance(exc, Exception) else None  # Ctrl-C stays Ctrl-C
        if cause is not None and not isinstance(exc, DiasError):  # a full disk: name the file, in words
            raise write_error(path, cause, kept=existed) from exc
        raise
    return path


def write_error(path: Path, exc: OSError | None, *, kept: bool, resumes: str = "") -> WriteError:
    """A one-line WriteError: which file, why (with the free space when the disk is full), what is left.

    `exc` is the OSError behind the failure, or None where the library hides it (LMDB reports a full disk
    as EIO); then the free space decides whether to say the disk is full. `resumes` says how to go on.
    """
    free = _free_bytes(path.parent)
    full = (exc is not None and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (free is not None and free < LOW_SPACE)
    if full:
        reason = f"no space left on the disk holding {path.parent} ({_mebibytes(free)} free); free some space"
    else:
        reason = (exc.strerror or str(exc)) if exc is not None else "the write failed"
    left = f"the previous {path.name} is intact" if kept else "nothing was written"
    return WriteError(
        exc.errno if exc is not None else errno.EIO,
        f"could not write {path}: {reason}; {resumes or left}",
    )


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError that caused `exc`: itself, or one in its cause/context chain (torch.save wraps ENOSPC)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _free_bytes(folder: Path) -> int | None:
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _mebibytes(num_bytes: int | None) -> str:
    return "unknown" if num_bytes is None else f"{num_bytes / (1 << 20):.1f} MiB"


def require_folder(path: str | os.PathLike) -> None:
    """An output folder must be a folder, or not exist yet: a file there (or above it) is a UsageError."""
    path = Path(path)
    for candidate in (path, *path.parents):  # the nearest one that exists must be a folder
        if candidate.exists():
            if not candidate.is_dir():
                raise UsageError(f"{candidate} is a file; --out must name a folder (a new one, or one dias wrote)")
            return


def temp_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files of `atomic_write(path, ...)` calls whose process was killed before the rename."""
    path = Path(path)
    return sorted(path.parent.glob(f"{glob.escape(_temp_prefix(path))}*{TEMP_SUFFIX}"))


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A .safetensors file of `state` and `metadata`, byte for byte the same for the same content.

    safetensors writes the metadata in hash order, which changes from call to call; here the header is
    written again with the metadata keys sorted and the tensors in their data order (the offsets, which
    count from the end of the header, do not change), padded with spaces to 8 bytes as safetensors does.
    """
    from safetensors.torch import save

    blob = save(state, metadata=metadata)
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    # data order; a name breaks ties between empty tensors, which share an offset
    tensors = sorted(
        ((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda item: (item[1]["data_offsets"], item[0])
    )
    canonical = {"__metadata__": dict(sorted(header["__metadata__"].items()))} if "__metadata__" in header else {}
    canonical.update(tensors)
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + size :]


def load_problem(exc: Exception) -> str:
    """Why torch.load (weights_only) failed, in words; never torch's advice to load with weights_only=False."""
    text = " ".join(str(exc).split())
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    if isinstance(exc, KeyError) or "invalid load key" in text:
        return "it is not a torch file (its first bytes are text or another format)"
    unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsupported:
        return f"it holds a Python object ({unsupported.group(1)}) beside its tensors, which dias never unpickles"
    if "Weights only load failed" in text:
        return "it holds Python objects beside its tensors, which dias never unpickles"
    if "zip archive" in text or "central directory" in text:
        return "it is damaged or truncated (not a complete torch zip archive)"
    return f"{type(exc).__name__}: {text[:200]}"


def read_state_dict(path: str | os.PathLike, *, option: str) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or .pth file (loaded with weights_only), unwrapped (see unwrap_state_dict).

    A file that is not one (garbage, a truncated download, a pickle with code in it) is a
    WeightsMismatchError naming the file and `option`, the setting that points at it.
    """
    import torch  # here, not at the top: config.py writes through this module without importing torch
    from safetensors.torch import load_file

    path = Path(path)
    try:
        if path.suffix == SAFETENSORS_SUFFIX:
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, zipfile and the unpickler each raise their own types
        if path.suffix == SAFETENSORS_SUFFIX:
            kind, problem = "a .safetensors file", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        else:
            kind, problem = "a torch .pth/.pt file", load_problem(exc)
        raise WeightsMismatchError(
            f"cannot read {path} as {kind} ({problem}); is it a complete download? Pass {option}=PATH to a good file"
        ) from None
    if not isinstance(state, dict):
        raise WeightsMismatchError(f"{path} holds a {type(state).__name__}, not a state dict; check {option}")
    return unwrap_state_dict(state)


def unwrap_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """The state dict inside a checkpoint dict: wrappers ("state_dict", then "model") are peeled off in turn.

    {"state_dict": {"model": {...}}} and {"model": {...}} both give the inner dict; a plain state dict
    comes back as it is.
    """
    for wrapper in STATE_DICT_WRAPPERS:
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return state


def check_state_dict(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], *, what: str, option: str
) -> None:
    """Raise WeightsMismatchError listing every missing, unexpected or wrongly shaped key.

    `what` names the file in the message and `option` the setting that points at it.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if given[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        problems = [
            f"{label} ({len(keys)}): {', '.join(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
            if keys
        ]
        raise WeightsMismatchError(f"{what} does not fit the model; " + "; ".join(problems) + f"; check {option}")
