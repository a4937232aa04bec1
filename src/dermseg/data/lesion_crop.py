"""Lesion-centred training crops (a 2018 winners' trick).

The dermoscopic structures lie on the lesion, while a uniformly random 512 px crop of a
4288x2848 image often shows mostly skin. :class:`LesionCentredCrop` is albumentations'
``RandomCrop`` that, with probability ``lesion_p``, centres the crop on a random pixel of
the Task 1 lesion mask instead. The lesion mask travels through the pipeline as the *last*
channel of the mask stack (so resizing keeps it aligned) and is dropped after it
(:func:`dermseg.data.dataset.make_item`). Only training crops use it: at test time the
whole image is segmented and no ground truth is looked at.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
from pydantic import Field


class LesionCentredCrop(A.RandomCrop):
    """``RandomCrop`` centred, with probability ``lesion_p``, on a random lesion pixel.

    Args:
        height, width: crop size.
        lesion_p: probability of a lesion-centred crop; otherwise (and when the lesion mask is
            empty or the image is smaller than the crop) the crop is uniformly random.
        pad_if_needed, pad_position, border_mode, fill, fill_mask, p: as ``A.RandomCrop``.

    The masks given to the pipeline must end with the lesion mask.
    """

    class InitSchema(A.RandomCrop.InitSchema):
        lesion_p: float = Field(ge=0, le=1)

    def __init__(
        self,
        height: int,
        width: int,
        lesion_p: float = 0.5,
        pad_if_needed: bool = False,
        pad_position: str = "center",
        border_mode: int = cv2.BORDER_CONSTANT,
        fill: tuple[float, ...] | float = 0.0,
        fill_mask: tuple[float, ...] | float = 0.0,
        p: float = 1.0,
    ) -> None:
        # every argument named: albumentations validates them from this signature
        super().__init__(
            height=height,
            width=width,
            pad_if_needed=pad_if_needed,
            pad_position=pad_position,  # type: ignore[arg-type]
            border_mode=border_mode,  # type: ignore[arg-type]
            fill=fill,
            fill_mask=fill_mask,
            p=p,
        )
        self.lesion_p = lesion_p

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        out = super().get_params_dependent_on_data(params, data)
        masks = data.get("masks")
        if out["pad_params"] is not None or masks is None or len(masks) == 0:
            return out
        if self.py_random.random() >= self.lesion_p:
            return out
        ys, xs = np.nonzero(np.asarray(masks[-1]))
        if len(ys) == 0:
            return out
        k = self.py_random.randrange(len(ys))
        height, width = params["shape"][:2]
        top = int(np.clip(ys[k] - self.height // 2, 0, height - self.height))
        left = int(np.clip(xs[k] - self.width // 2, 0, width - self.width))
        out["crop_coords"] = (left, top, left + self.width, top + self.height)
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (*super().get_transform_init_args_names(), "lesion_p")
