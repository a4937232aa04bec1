"""Batches with a fixed number of synthetic draws: counts, draw numbers, determinism, resume."""

from __future__ import annotations

import pytest

from dermseg.data.mix_sampling import SyntheticMixSampler
from dermseg.data.sampling import ResumableSampler


def _mix(n: int = 10, real_batch: int = 3, per_batch: int = 1, **kw: object) -> SyntheticMixSampler:
    real = ResumableSampler(n, seed=5, batch_size=real_batch, **kw)
    return SyntheticMixSampler(real, per_batch, first_draw=n)


def _batches(sampler: SyntheticMixSampler) -> list[list[tuple[int, int]]]:
    keys, size = list(sampler), sampler.batch_size
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def test_every_batch_holds_per_batch_draws_after_its_real_items() -> None:
    s = _mix(n=10, real_batch=3, per_batch=1)  # batch 4 with mix 0.25; drop_last: 3 batches
    s.set_epoch(0)
    batches = _batches(s)
    assert len(batches) == s.batches_per_epoch() == 3 and len(s) == 12
    for b, batch in enumerate(batches):
        assert len(batch) == 4
        assert all(i < 10 for i, _ in batch[:3])  # real
        assert [i for i, _ in batch[3:]] == [10 + b]  # draw k = b in epoch 0
    real = [i for batch in batches for i, _ in batch[:3]]
    assert len(set(real)) == 9  # a permutation of the real items, as without the mix


def test_draw_numbers_count_epochs_batches_and_slots() -> None:
    s = _mix(n=8, real_batch=2, per_batch=2)  # 4 batches per epoch
    assert s.draw_number(0, 0, 0) == 0 and s.draw_number(0, 0, 1) == 1 and s.draw_number(0, 3, 1) == 7
    assert s.draw_number(1, 0, 0) == 8 and s.draw_number(2, 1, 1) == (2 * 4 + 1) * 2 + 1 == 19
    s.set_epoch(1)
    draws = [i - 8 for i, _ in s if i >= 8]
    assert draws == list(range(8, 16))  # every slot of the run a new draw


def test_ranks_get_their_own_draws() -> None:
    ranks = [_mix(n=8, real_batch=2, per_batch=1, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    draws = [[i - 8 for i, _ in s if i >= 8] for s in ranks]
    assert draws == [[4, 5], [6, 7]]  # ((1 * 2 + rank) * 2 batches + b) * 1


def test_the_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch() -> None:
    a, b = _mix(), _mix()
    a.set_epoch(2)
    b.set_epoch(2)
    full = list(a)
    assert full == list(b)
    b.set_epoch(3)
    assert list(b) != full
    a.set_epoch(2, start_batch=1)
    assert list(a) == full[4:] and len(a) == 8
    seeds = [seed for i, seed in full if i >= 10]
    assert len(set(seeds)) == 3 and all(0 <= seed < 2**62 for seed in seeds)


def test_without_drop_last_the_short_last_batch_still_gets_its_draws() -> None:
    s = _mix(n=7, real_batch=3, per_batch=2, drop_last=False)  # real batches of 3, 3, 1
    s.set_epoch(0)
    keys = list(s)
    assert len(keys) == len(s) == 7 + 3 * 2
    assert [i >= 7 for i, _ in keys[-3:]] == [False, True, True]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="per_batch >= 1"):
        _mix(per_batch=0)
