"""Training batches with a fixed number of synthetic draws each (``data.synthetic_mix``).

:class:`SyntheticMixSampler` takes the real items' :class:`~dermseg.data.sampling.ResumableSampler`
(built with ``batch_size`` = the real images of a batch) and follows each of its batches with
``per_batch`` synthetic draws, so that every batch of the DataLoader (``real + per_batch``
items) holds exactly ``per_batch`` of them (the incomplete last batch too, without
``drop_last``). An epoch is still one pass over the real images.

Draw numbers are counted, not drawn: slot ``j`` of batch ``b`` of epoch ``e`` (rank ``r`` of
``R``, ``B`` batches per epoch) is draw ``k = ((e * R + r) * B + b) * per_batch + j``, a different
draw for every slot of the run; its augmentation seed is a function of ``(seed, k)``. Like the
real order, everything is a function of ``(seed, epoch)``: a run resumed at a batch sees the
same draws as one that was not stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from dermseg.data.sampling import ItemKey, ResumableSampler
from dermseg.data.synthetic_draws import MIX_STREAM


class SyntheticMixSampler(Sampler[ItemKey]):
    """The real items' order, each batch followed by ``per_batch`` synthetic draws.

    Args:
        real: the order of the real items; its ``batch_size`` is the real images of a batch.
        per_batch: synthetic items per batch, ``>= 1``.
        first_draw: the dataset index of draw 0 (the number of real items:
            :class:`~dermseg.data.synthetic_draws.WithSyntheticDraws`).

    Yields:
        ``(index, augmentation seed)`` keys for :class:`~dermseg.data.sampling.SeededItems`.

    Raises:
        ValueError: ``per_batch < 1`` or ``first_draw < 0``.
    """

    def __init__(self, real: ResumableSampler, per_batch: int, first_draw: int) -> None:
        if per_batch < 1 or first_draw < 0:
            raise ValueError(f"need per_batch >= 1 and first_draw >= 0, got {per_batch} and {first_draw}")
        self.real, self.per_batch, self.first_draw = real, per_batch, first_draw

    @property
    def batch_size(self) -> int:
        """Items per batch: the real ones and the draws."""
        return self.real.batch_size + self.per_batch

    @property
    def drop_last(self) -> bool:
        return self.real.drop_last

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch, and the batch of it to start at (after a resume)."""
        self.real.set_epoch(epoch, start_batch)

    def batches_per_epoch(self) -> int:
        """Steps per epoch of one process (those of the real items)."""
        return self.real.batches_per_epoch()

    def draw_number(self, epoch: int, batch: int, slot: int) -> int:
        """The draw of ``slot`` (``0 .. per_batch - 1``) of ``batch`` of ``epoch``, on this rank."""
        runs = epoch * self.real.world_size + self.real.rank
        return (runs * self.batches_per_epoch() + batch) * self.per_batch + slot

    def draw_seed(self, k: int) -> int:
        """The augmentation seed of draw ``k``, in ``0 .. 2**62 - 1``."""
        state = np.random.SeedSequence([self.real.seed, MIX_STREAM, k]).generate_state(1, np.uint64)
        return int(state[0] >> np.uint64(2))

    def __iter__(self) -> Iterator[ItemKey]:
        epoch, start, real_batch = self.real.epoch, self.real.start_batch, self.real.batch_size
        order, seeds = self.real.epoch_order(epoch)
        for b in range(start, self.batches_per_epoch()):
            for i in range(b * real_batch, min((b + 1) * real_batch, len(order))):
                yield int(order[i]), int(seeds[i])
            for j in range(self.per_batch):
                k = self.draw_number(epoch, b, j)
                yield self.first_draw + k, self.draw_seed(k)

    def __len__(self) -> int:
        return len(self.real) + self.per_batch * max(0, self.batches_per_epoch() - self.real.start_batch)


__all__ = ["SyntheticMixSampler"]
