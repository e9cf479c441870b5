"""User-facing errors: one base class, so a user's mistake and a bug look different.

Every error a user can cause and fix (a misspelt option, a missing or damaged file, a folder in use)
is a `DiasError`; its message says what was wrong and how to fix it. The CLI prints a DiasError as one
line (with its traceback under `--debug`); any other exception is a bug and keeps its traceback.

Each subclass also derives from the built-in type that fits it (ValueError, FileNotFoundError, ...),
so `except FileNotFoundError` around a dias call keeps working.
"""

from __future__ import annotations

import errno


class DiasError(Exception):
    """Base of every error a user can cause; the message names the problem and the fix."""


class MissingFileError(DiasError, FileNotFoundError):
    """A file or folder the user named (or that a command needs) does not exist."""


class FileInTheWayError(DiasError, FileExistsError):
    """A command would replace a finished file or run; the message names the flag that allows it."""


class WriteError(DiasError, OSError):
    """A file could not be written (a full disk, a file-size limit, no permission); the old content is intact."""


class UsageError(DiasError, ValueError):
    """A command-line argument or API value that cannot work, e.g. an output path with the wrong suffix."""


class MissingPackageError(DiasError, ImportError):
    """An optional package a command needs is not installed; the message names the pip command."""


class DownloadError(DiasError, ConnectionError):
    """A download could not start or finish (no index or hub reachable); the message names another way in."""


class DamagedFileError(DiasError, ValueError):
    """A file's content is not what it should be: a hash that differs from the pinned one, or a truncated file."""


# OSErrors a user's paths or machine cause, not a bug: the fix for each
OS_ERROR_FIXES = {
    errno.ENAMETOOLONG: "use a shorter name (at most 255 bytes per file or folder name)",
    errno.EROFS: "the filesystem is read-only; pass an output path on a writable one",
    errno.EACCES: "you may not write or read there; pass another path or change its permissions",
    errno.EPERM: "you may not write or read there; pass another path or change its permissions",
    errno.ENOSPC: "the disk is full; free some space or pass an output path on another disk",
    errno.EDQUOT: "the disk quota is used up; free some space or pass an output path on another disk",
    errno.ENOTDIR: "a part of the path is a file, not a folder; pass another path",
}


def os_error_message(exc: OSError) -> str | None:
    """One line for an OSError a user can fix (OS_ERROR_FIXES): what failed, on which path, and the fix."""
    fix = OS_ERROR_FIXES.get(exc.errno)
    if fix is None:
        return None
    where = f" at {exc.filename}" if exc.filename is not None else ""
    return f"{exc.strerror or exc}{where}; {fix}"
