from __future__ import annotations

import numpy as np
import pytest

from dermseg.data.sampling import ResumableSampler, SeededItems, attribute_balance_weights


def test_order_is_a_function_of_seed_and_epoch() -> None:
    a = ResumableSampler(10, seed=3, batch_size=2)
    b = ResumableSampler(10, seed=3, batch_size=2)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert [i for i, _ in a] != [i for i, _ in b]
    assert sorted(i for i, _ in a) == list(range(10))  # a permutation without weights


def test_starting_mid_epoch_yields_the_rest_of_the_same_epoch() -> None:
    s = ResumableSampler(11, seed=0, batch_size=3)  # drop_last: 3 batches of 3
    s.set_epoch(4)
    full = list(s)
    assert len(full) == len(s) == 9
    s.set_epoch(4, start_batch=2)
    assert list(s) == full[6:] and len(s) == 3


def test_ranks_get_disjoint_shards_of_equal_size() -> None:
    shards = []
    for rank in range(3):
        s = ResumableSampler(20, seed=1, batch_size=2, rank=rank, world_size=3)
        s.set_epoch(0)
        shards.append([i for i, _ in s])
    assert all(len(x) == 6 for x in shards)
    flat = [i for x in shards for i in x]
    assert len(set(flat)) == len(flat)


def test_weights_draw_heavy_items_more_often() -> None:
    weights = np.ones(100)
    weights[:5] = 20.0  # 5 % of the items hold half the weight
    s = ResumableSampler(100, seed=0, batch_size=10, weights=weights)
    drawn = []
    for epoch in range(20):
        s.set_epoch(epoch)
        drawn += [i for i, _ in s]
    share = np.mean(np.array(drawn) < 5)
    assert 0.4 < share < 0.6
    with pytest.raises(ValueError, match="weights"):
        ResumableSampler(3, seed=0, batch_size=1, weights=[1.0, -1.0, 1.0])


def test_seeded_items_reseed_the_transform_per_item() -> None:
    class Transform:
        seed = None

        def reseed(self, seed: int) -> None:
            self.seed = seed

    class Data:
        transform = Transform()

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> tuple[int, int | None]:
            return i, self.transform.seed

    view = SeededItems(Data())
    assert view[(2, 77)] == (2, 77) and view[1] == (1, 77) and len(view) == 3


def test_balance_weights_favour_rare_attributes() -> None:
    presence = np.zeros((100, 5), dtype=bool)
    presence[:60, 3] = True  # common pigment network
    presence[95:, 4] = True  # rare streaks
    w = attribute_balance_weights(presence, power=1.0)
    assert w.mean() == pytest.approx(1.0)
    assert w[96] / w[0] == pytest.approx(12.0)  # 60 % / 5 %
    assert np.allclose(attribute_balance_weights(presence, power=0.0), 1.0)
    with pytest.raises(ValueError):
        attribute_balance_weights(presence[:, :3])
