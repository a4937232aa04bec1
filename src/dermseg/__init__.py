"""dermseg: segmentation of the local dermoscopic structures of ISIC 2018 Task 2."""

from __future__ import annotations

from dermseg._version import __version__
from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES

__all__ = ["ATTRIBUTES", "NUM_ATTRIBUTES", "Segmenter", "__version__"]


def __getattr__(name: str) -> object:
    # Segmenter imports torch: load it only when asked for (``from dermseg import Segmenter``).
    if name == "Segmenter":
        from dermseg.inference.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'dermseg' has no attribute {name!r}")
