"""Resumable, seeded sampling: the data a step sees depends only on (seed, epoch, position), never on workers.

`EpochSampler` yields (epoch, index) pairs: a permutation drawn from (seed, epoch), split over the ranks,
started at any batch of the epoch. `SeededSamples` seeds torch's RNG from (seed, epoch, index) around each
sample's transform, so a random crop is the same whichever worker (or the main process) draws it. A run
resumed at (epoch, batches consumed) therefore sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from dias.errors import UsageError

# Mixes the sample's coordinates into one 63-bit seed (large odd constants, as in splitmix64).
_SEED_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    value = 0
    for part, mix in zip((seed, epoch, index), _SEED_MIX, strict=True):
        value = ((value ^ part) * mix + 1) % (1 << 63)
    return value


class EpochSampler(Sampler):
    """Shuffled (epoch, index) pairs of one rank's share of the data, starting at a batch of the epoch.

    Each epoch's permutation comes from (seed, epoch). The tail that does not fill a whole batch on every
    rank is dropped, so all ranks take the same number of steps. `set_position` picks the epoch and how many
    of this rank's batches to skip.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        if self.batches_per_epoch == 0:
            raise UsageError(
                f"{num_samples} training samples do not fill one batch of {batch_size} on each of {world_size} "
                "rank(s); lower data.batch_size or add data"
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // (self.batch_size * self.world_size)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1 % (1 << 62)))
        order = torch.randperm(self.num_samples, generator=generator)
        per_rank = self.batches_per_epoch * self.batch_size
        mine = order[self.rank :: self.world_size][:per_rank]  # (per_rank,) this rank's share
        for index in mine[self.start_batch * self.batch_size :].tolist():
            yield self.epoch, index


class SeededSamples(Dataset):
    """Wraps a dataset whose transform draws from torch's global RNG; item (epoch, index) is reproducible."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        # fork_rng leaves the caller's stream untouched (with num_workers=0 that is the training stream).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.dataset[index]
