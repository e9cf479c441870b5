"""A restricted unpickler for the official LMDB releases: numpy arrays, scalars, plain containers and byte buffers.

The official records are pickles, and unpickling runs whatever callables a pickle names. This unpickler
admits only the globals numpy needs to rebuild arrays and scalars; any other global (os.system,
builtins.eval, subprocess.Popen, ...) is refused before it is looked up, so its payload never runs.
Plain containers (dict, list, tuple, bytes, str, numbers, bool, None) need no global at all. io.BytesIO,
which RandSF.Q's MOVi records hold, is rebuilt from its bytes, position and attribute dict: data only, no
file, no call.

    value = safe_loads(raw, key=b"000042")
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from dias.errors import DiasError

# (module, name) pairs that rebuild numpy arrays, dtypes and scalars, in numpy 1.x and 2.x spellings.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in pickle protocols 0-2: a pure str -> bytes conversion
        ("_io", "BytesIO"),  # RandSF.Q's encoded videos: an in-memory buffer, rebuilt from its bytes alone
    }
)


class UnsafePickleError(DiasError, pickle.UnpicklingError):
    """A pickle names a global outside ALLOWED_GLOBALS; nothing it names was imported or called."""


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class admits ALLOWED_GLOBALS only."""

    def __init__(self, file: io.BufferedIOBase, key: bytes | str | None = None):
        super().__init__(file)
        self.key = key

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            where = f" in record {self.key!r}" if self.key is not None else ""
            raise UnsafePickleError(
                f"refused to unpickle {module}.{name}{where}: only numpy arrays, plain containers and byte buffers are "
                "allowed; the file is not an official DIAS LMDB or has been tampered with"
            )
        return super().find_class(module, name)


def safe_loads(data: bytes, key: bytes | str | None = None) -> Any:
    """Unpickle `data` with RestrictedUnpickler; `key` is named in errors."""
    return RestrictedUnpickler(io.BytesIO(bytes(data)), key=key).load()
