"""A torch map-style Dataset over one dias LMDB split, and a collate that counts skipped records.

dataset = LmdbDataset("data/synthetic/train.lmdb", skip_corrupt=True)
loader = DataLoader(dataset, batch_size=32, num_workers=4, collate_fn=collate)
batch = next(iter(loader))  # image (B,3,H,W) uint8, mask (B,H,W) int64, index (B,), num_skipped
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dias.data.codec import CorruptRecordError
from dias.data.records import LmdbReader, WorkerReader

log = logging.getLogger(__name__)

Sample = dict[str, Any]


class LmdbDataset(Dataset):
    """Samples {"image": (3,H,W) uint8, "mask": (H,W) int64 instance ids, "index": int} of one split
    (with_meta: also "meta", the record's metadata dict).

    The LMDB file is opened lazily in each DataLoader worker, so the dataset pickles without it.
    Mask ids: 0 background, 1..M objects, 65535 ignore. With skip_corrupt=True a damaged record is
    logged once and returned as None, which `collate` drops and counts.
    """

    def __init__(
        self,
        path: str | Path,
        transform: Callable[[Sample], Sample] | None = None,
        skip_corrupt: bool = False,
        *,
        with_meta: bool = False,
    ):
        self.path = Path(path)
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        self.with_meta = with_meta  # samples also carry the record's metadata (e.g. object labels)
        with LmdbReader(self.path) as reader:
            self.header = reader.header
        self._lmdb = WorkerReader(self.path)
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return int(self.header["num_records"])

    def __getitem__(self, index: int) -> Sample | None:
        try:
            image, mask, meta = self._lmdb.get().read(index)
        except CorruptRecordError as exc:
            if not self.skip_corrupt:
                raise
            if index not in self._warned:
                self._warned.add(index)
                log.warning("skipping %s", exc)
            return None
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),  # (3,H,W) uint8
            "mask": torch.from_numpy(mask.astype(np.int64)),  # (H,W)
            "index": index,
        }
        if self.with_meta:
            sample["meta"] = meta
        return self.transform(sample) if self.transform is not None else sample


def collate(batch: list[Sample | None]) -> dict[str, Any]:
    """Stack samples, dropping skipped ones (None); `num_skipped` counts them.

    Tensors are stacked (all samples must share a shape), numbers become a tensor (ints int64), anything else
    is kept as a list. A batch with every sample skipped holds only `num_skipped`.
    """
    samples = [sample for sample in batch if sample is not None]
    out: dict[str, Any] = {"num_skipped": len(batch) - len(samples)}
    if not samples:
        return out
    for key in samples[0]:
        values = [sample[key] for sample in samples]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(value.shape) for value in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"cannot batch {key!r} of different shapes {sorted(shapes)}; "
                    "add a transform that crops or resizes every sample to data.image_size"
                )
            out[key] = torch.stack(values)
        elif isinstance(values[0], (bool, int, float)):
            out[key] = torch.tensor(values)  # bool, int64 or float32
        else:
            out[key] = values
    return out
