"""The error family's helpers: values echoed in messages stay short whatever their size."""

from __future__ import annotations

import pytest

from dermseg.errors import shown_value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.5, "0.5"),
        ("lots", "'lots'"),
        ({"x": 2}, "{'x': 2}"),
        (None, "None"),
    ],
)
def test_small_values_are_shown_whole(value: object, shown: str) -> None:
    assert shown_value(value) == shown


def test_huge_values_are_cut_at_a_bounded_cost() -> None:
    assert len(shown_value("x" * 10**6)) <= 80
    assert len(shown_value(10**5000)) <= 80
    laughs: list = ["lol"] * 9
    for _ in range(30):  # 9**31 strings if formatted whole
        laughs = [laughs] * 9
    text = shown_value(laughs)
    assert len(text) <= 80 and text.startswith("[[[")
    assert len(shown_value("x" * 200, limit=10)) <= 10
