"""The first-frame boxes of `dias infer --boxes FILE`: what a conditional video model starts from.

A conditional model (the MOVi configs) initialises slot m from the box of object m in the clip's first frame.
The file is JSON, one entry per clip, named as the clip's folder or video file (its last path component):

    {
      "units": "pixels",
      "clips": {
        "walk.mp4": [[12, 30, 80, 96], [100, 20, 160, 90]],
        "frames":   [[0, 0, 40, 25]]
      }
    }

A box is [left, top, right, bottom] with pixel edges as its sides, as dias.data.boxes computes them from masks:
`"pixels"` in the first frame's own pixels (0 <= left <= right <= width, 0 <= top <= bottom <= height),
`"normalised"` divided by its width and height (in [0, 1]). A clip takes at most K boxes (model.num_slots);
slot m follows object m, and the slots past the last box start from an empty box (0, 0, 0, 0), as padding does
in training. Plain Python (no torch), so the CLI's help can quote BOX_FILE_FORMAT.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NamedTuple

from dias.errors import MissingFileError, UsageError

UNITS_KEY, CLIPS_KEY = "units", "clips"
PIXELS, NORMALISED = "pixels", "normalised"
BOX_FILE_FORMAT = (
    f'{{"{UNITS_KEY}": "{PIXELS}" or "{NORMALISED}", "{CLIPS_KEY}": {{"CLIP": [[left, top, right, bottom], ...]}}}}, '
    "CLIP the name of a clip's folder or video file"
)

Box = list[float]  # left, top, right, bottom


class ClipBoxes(NamedTuple):
    path: Path  # the file, for messages
    units: str  # PIXELS or NORMALISED
    clips: dict[str, list[Box]]  # clip name -> its M boxes, as written


def read_clip_boxes(path: str | Path, num_slots: int) -> ClipBoxes:
    """The boxes file, checked for its shape: every clip's boxes a list of M <= num_slots boxes of 4 numbers."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"boxes file not found: {path}")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text file; expected JSON {BOX_FILE_FORMAT}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}); expected {BOX_FILE_FORMAT}") from None
    if not isinstance(content, dict) or not isinstance(content.get(CLIPS_KEY), dict):
        raise UsageError(f"{path}: no {CLIPS_KEY!r} object; expected {BOX_FILE_FORMAT}")
    units = content.get(UNITS_KEY)
    if units not in (PIXELS, NORMALISED):
        raise UsageError(f"{path}: {UNITS_KEY!r} must be {PIXELS!r} or {NORMALISED!r}, got {json.dumps(units)}")
    clips = {name: _boxes(path, name, boxes, num_slots) for name, boxes in content[CLIPS_KEY].items()}
    return ClipBoxes(path, units, clips)


def first_frame_boxes(boxes: ClipBoxes, clip: str, height: int, width: int) -> list[Box]:
    """The M boxes of one clip, whose first frame is height x width pixels, normalised to [0, 1]."""
    if clip not in boxes.clips:
        raise UsageError(
            f"{boxes.path} has no boxes for the clip {clip!r}; add {json.dumps(clip)}: [[left, top, right, bottom], "
            f"...] under {CLIPS_KEY!r}"
        )
    scale = (width, height, width, height) if boxes.units == PIXELS else (1, 1, 1, 1)
    bounds = f"its first frame's {width}x{height} pixels" if boxes.units == PIXELS else "[0, 1]"
    normalised = []
    for index, box in enumerate(boxes.clips[clip]):
        left, top, right, bottom = (value / size for value, size in zip(box, scale, strict=True))
        if not (0 <= left <= right <= 1 and 0 <= top <= bottom <= 1):
            raise UsageError(
                f"{boxes.path}: box {index} of the clip {clip!r}, {box}, is not [left, top, right, bottom] within "
                f"{bounds} with left <= right and top <= bottom"
            )
        normalised.append([left, top, right, bottom])
    return normalised


def _boxes(path: Path, clip: str, boxes: Any, num_slots: int) -> list[Box]:
    """One clip's entry, refused in one line unless it is a list of M <= K boxes of 4 finite numbers."""

    def is_number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def is_box(box: Any) -> bool:
        return isinstance(box, list) and len(box) == 4 and all(map(is_number, box))

    if not isinstance(boxes, list) or not all(is_box(box) for box in boxes):
        raise UsageError(
            f"{path}: the clip {clip!r} must have a list of boxes, each [left, top, right, bottom] (4 numbers), "
            f"got {json.dumps(boxes)[:80]}"
        )
    if len(boxes) > num_slots:
        raise UsageError(
            f"{path}: the clip {clip!r} has {len(boxes)} boxes, and the model has {num_slots} slots "
            "(model.num_slots), one per box: give at most that many"
        )
    return [[float(v) for v in box] for box in boxes]


__all__ = ["BOX_FILE_FORMAT", "ClipBoxes", "first_frame_boxes", "read_clip_boxes"]
