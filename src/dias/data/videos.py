"""Encoded video, decoded with PyAV (the optional extra `video`): a user's video file, or a buffer in a record.

    frames = decode_video("walk.mp4")                          # (T, H, W, 3) uint8 RGB
    index_maps = decode_video(buffer, pixel_format="gray")     # (T, H, W) uint8, e.g. an FFV1 index map

PyAV is imported only here and only when a video is decoded; without it one line names the extra to install.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import numpy as np

from dias.errors import MissingPackageError, UsageError

INSTALL_VIDEO_EXTRA = 'pip install "dias[video]"'


def import_av(needed_for: str) -> ModuleType:
    """The PyAV module; MissingPackageError "<needed_for> needs PyAV: pip install ..." where it is not installed."""
    try:
        import av
    except ImportError:
        raise MissingPackageError(f"{needed_for} needs PyAV: {INSTALL_VIDEO_EXTRA}") from None
    return av


def decode_video(source: str | Path | BinaryIO, *, pixel_format: str = "rgb24", what: str | None = None) -> np.ndarray:
    """Every frame of the first video stream: (T, H, W, 3) uint8 for rgb24, (T, H, W) for gray.

    `source` is a file path or a readable binary file object (an in-memory buffer). `what` names the
    source in errors (default: the path). Undecodable or frameless input raises UsageError.
    """
    what = what or str(source)
    av = import_av(f"decoding the video {what}")
    try:
        with av.open(source if not isinstance(source, Path) else str(source), mode="r") as container:
            frames = [frame.to_ndarray(format=pixel_format) for frame in container.decode(video=0)]
    except (av.FFmpegError, ValueError, IndexError, EOFError) as exc:
        raise UsageError(f"cannot decode the video {what}: {exc}") from None
    if not frames:
        raise UsageError(f"the video {what} holds no frame")
    if len({frame.shape for frame in frames}) != 1:
        raise UsageError(f"the frames of the video {what} change size")
    return np.stack(frames)
