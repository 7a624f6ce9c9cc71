"""Repeated augmentation (Hoffer et al. 2020; DeiT's ``RASampler``): each sampled image appears ``repeats`` times in
an epoch, and since the batch transform draws every image's augmentation independently, each copy is augmented
differently.

The epoch's order: a permutation of the data (seeded by ``(seed, epoch)``, the same on every rank), each index
repeated ``repeats`` times in a row, dealt round-robin to the ranks — so under DDP the copies of an image go to
different ranks (when there are at least ``repeats`` of them), in a single process they sit next to each other in
the stream. Each rank takes ``ceil(len / world)`` indices, the length of an ordinary epoch, so the schedule (steps
per epoch) is unchanged and an epoch sees about ``1 / repeats`` of the distinct images. (DeiT rounds the length
down to a multiple of 256 images; here it equals the ordinary epoch.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class RepeatAugSampler(Sampler[int]):
    """Indices of one rank's share of an epoch with repeated augmentation; call :meth:`set_epoch` every epoch."""

    def __init__(self, num_items: int, repeats: int = 3, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be positive, got {num_items}")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.num_items, self.repeats, self.num_replicas, self.rank, self.seed = (
            num_items, repeats, num_replicas, rank, seed,
        )  # fmt: skip
        self.num_samples = math.ceil(num_items / num_replicas)  # per rank: an ordinary epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch, 7]).generate_state(1, np.uint64)[0] >> np.uint64(1))
        order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(seed))
        stream = order.repeat_interleave(self.repeats)
        total = self.num_samples * self.num_replicas
        if len(stream) < total:  # fewer items than ranks: wrap around
            stream = stream.repeat(math.ceil(total / len(stream)))
        return iter(stream[:total][self.rank :: self.num_replicas].tolist())
