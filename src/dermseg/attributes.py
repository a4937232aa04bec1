"""The five ISIC 2018 Task 2 attributes: the one place their names, order and colours live.

The order is the official (alphabetical) one and is the channel order of every
mask stack, logit tensor and probability map in dermseg.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attribute:
    """One dermoscopic structure.

    Attributes:
        index: channel index in every ``(5, H, W)`` stack.
        name: official name, as in ``ISIC_<id>_attribute_<name>.png``.
        display_name: human-readable name for tables and plots.
        colour: RGB overlay colour, 0-255.
    """

    index: int
    name: str
    display_name: str
    colour: tuple[int, int, int]


_TABLE: tuple[tuple[str, str, tuple[int, int, int]], ...] = (
    ("globules", "Globules", (230, 25, 75)),
    ("milia_like_cyst", "Milia-like cysts", (255, 225, 25)),
    ("negative_network", "Negative network", (0, 130, 200)),
    ("pigment_network", "Pigment network", (60, 180, 75)),
    ("streaks", "Streaks", (245, 130, 48)),
)

ATTRIBUTE_INFO: tuple[Attribute, ...] = tuple(
    Attribute(i, name, display, colour) for i, (name, display, colour) in enumerate(_TABLE)
)
ATTRIBUTES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTE_INFO)
NUM_ATTRIBUTES: int = len(ATTRIBUTES)
DISPLAY_NAMES: dict[str, str] = {a.name: a.display_name for a in ATTRIBUTE_INFO}
COLOURS: dict[str, tuple[int, int, int]] = {a.name: a.colour for a in ATTRIBUTE_INFO}


def attribute_index(name: str) -> int:
    """Channel index of an attribute.

    Raises:
        ValueError: ``name`` is not one of :data:`ATTRIBUTES` (the message lists them).
    """
    try:
        return ATTRIBUTES.index(name)
    except ValueError:
        raise ValueError(f"unknown attribute {name!r}; expected one of {', '.join(ATTRIBUTES)}") from None
