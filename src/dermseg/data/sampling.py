"""Training order that can stop and restart anywhere: a resumable sampler and per-item seeds.

A run killed in the middle of an epoch must continue as if nothing happened. So the
order of an epoch is a pure function of ``(seed, epoch)``, the sampler can start at
any batch of it, and every item carries its own augmentation seed, drawn from the
same function: the crops and flips an image gets do not depend on which DataLoader
worker decodes it, how many workers there are, or whether the run was resumed.

:class:`ResumableSampler` yields ``(index, item_seed)`` pairs; wrap the dataset in
:class:`SeededItems` so it understands them. With ``weights`` the sampler draws with
replacement in proportion to them (attribute-balanced sampling, see
:func:`attribute_balance_weights`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dermseg.attributes import ATTRIBUTES

ItemKey = tuple[int, int]  # (dataset index, augmentation seed)


class ResumableSampler(Sampler[ItemKey]):
    """Shuffled, sharded, restartable order over ``n`` items.

    Args:
        n: dataset length.
        seed: run seed; epoch ``e``'s order depends on ``(seed, e)`` only.
        batch_size: images per step per process (to start at a batch boundary).
        rank: this process's rank under DDP (0 without).
        world_size: number of processes.
        drop_last: drop the incomplete last batch of each process.
        weights: optional per-item sampling weights (``n`` non-negative numbers);
            then ``n`` items are drawn with replacement per epoch.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        weights: Sequence[float] | None = None,
    ) -> None:
        if n <= 0 or batch_size <= 0:
            raise ValueError(f"need n > 0 and batch_size > 0, got {n} and {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n, self.seed, self.batch_size = n, seed, batch_size
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.weights: torch.Tensor | None = None
        if weights is not None:
            w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
            if w.shape != (n,) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"weights must be {n} finite non-negative numbers with a positive sum")
            self.weights = w
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch, and the batch of it to start at (after a resume)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def _per_rank(self) -> int:
        per_rank = self.n // self.world_size if self.drop_last else -(-self.n // self.world_size)
        return max(per_rank, 1)

    def batches_per_epoch(self) -> int:
        """Steps per epoch of one process."""
        per_rank = self._per_rank()
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This process's indices and item seeds for ``epoch`` (the whole epoch)."""
        g = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        )
        if self.weights is None:
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        seeds = torch.randint(0, 2**62, (self.n,), generator=g)
        total = self._per_rank() * self.world_size
        if total > self.n:  # pad by repeating the start, like DistributedSampler
            order = torch.cat([order, order[: total - self.n]])
            seeds = torch.cat([seeds, seeds[: total - self.n]])
        order, seeds = order[self.rank : total : self.world_size], seeds[self.rank : total : self.world_size]
        usable = self.batches_per_epoch() * self.batch_size if self.drop_last else len(order)
        return order[:usable].numpy(), seeds[:usable].numpy()

    def __iter__(self) -> Iterator[ItemKey]:
        order, seeds = self.epoch_order(self.epoch)
        start = self.start_batch * self.batch_size
        for index, seed in zip(order[start:], seeds[start:], strict=True):
            yield int(index), int(seed)

    def __len__(self) -> int:
        order_len = self.batches_per_epoch() * self.batch_size if self.drop_last else self._per_rank()
        return max(0, order_len - self.start_batch * self.batch_size)


class SeededItems(Dataset):
    """A dataset view that takes ``(index, seed)`` keys and reseeds the transform per item.

    Args:
        dataset: a dataset with a ``transform`` attribute holding a
            :class:`~dermseg.data.transforms.SegmentationTransform` (or ``None``).
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: ItemKey | int) -> Any:
        if isinstance(key, tuple):
            index, seed = key
            transform = getattr(self.dataset, "transform", None)
            if transform is not None and hasattr(transform, "reseed"):
                transform.reseed(seed)
            return self.dataset[index]
        return self.dataset[key]


def attribute_balance_weights(
    presence: np.ndarray, power: float = 0.5, num_labels: int = len(ATTRIBUTES)
) -> np.ndarray:
    """Per-image sampling weights that favour images holding rare labels (attributes).

    Each image weighs ``max over its labels of (1 / frequency) ** power`` (images with no
    label count as the most common label), normalised to mean 1; ``power`` 0 is uniform,
    1 makes every label about equally often seen. With a single label every image weighs 1.

    Args:
        presence: ``(N, C)`` booleans, which labels each training image contains
            (``C = num_labels``; the five Task 2 attributes by default).
        power: strength of the balancing, in ``[0, 1]``.
        num_labels: ``C``, the labels of the set.

    Returns:
        ``(N,)`` float64 weights with mean 1.

    Raises:
        ValueError: ``presence`` is not ``(N, num_labels)``, or ``power`` is outside ``[0, 1]``.
    """
    presence = np.asarray(presence, dtype=bool)
    if presence.ndim != 2 or presence.shape[1] != num_labels:
        raise ValueError(f"presence must be (N, {num_labels}), got {presence.shape}")
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"power must be in [0, 1], got {power}")
    freq = presence.mean(axis=0)
    common = freq.max() if freq.max() > 0 else 1.0
    inv = np.where(freq > 0, common / np.maximum(freq, 1e-12), 1.0) ** power
    weights = np.where(presence.any(axis=1), (presence * inv).max(axis=1), 1.0)
    return weights / weights.mean()
