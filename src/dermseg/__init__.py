"""dermseg: segmentation of the local dermoscopic structures of ISIC 2018 Task 2."""

from __future__ import annotations

from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES

__all__ = ["ATTRIBUTES", "NUM_ATTRIBUTES", "__version__"]
__version__ = "0.1.0"
