"""pose6d.brush_rle against Label Studio's own brush codec (label_studio_sdk.converter.brush):
the same bytes as the SDK's encoder, and the SDK's decoder gives the mask back."""
from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from pose6d.brush_rle import mask_to_rle


def masks():
    rng = np.random.default_rng(3)
    yield "one pixel", np.ones((1, 1), bool)
    yield "empty", np.zeros((7, 5), bool)
    yield "full", np.ones((9, 13), bool)
    yield "noise", rng.random((31, 17)) < 0.5  # many literal runs
    big = np.zeros((480, 640), bool)
    big[100:300, 200:420] = True
    big[150:160, 250:600] = False
    yield "blocks", big  # runs longer than 2^16 values (split)
    disc = np.hypot(*np.mgrid[-60:60, -80:80]) < 50
    yield "disc", disc


@pytest.mark.parametrize("name, mask", list(masks()), ids=[n for n, _ in masks()])
def test_same_bytes_as_the_sdk_and_decoded_by_it(name, mask):
    ours = mask_to_rle(mask)
    # The same bit stream; the SDK sometimes pads it with one more zero byte (no information).
    assert unpadded(ours) == unpadded(mask2rle(mask.astype(np.uint8) * 255))
    values = np.asarray(decode_rle(ours), dtype=np.uint8).reshape(*mask.shape, 4)
    assert (values[..., 3] > 0).tolist() == mask.tolist()
    assert (values == values[..., :1]).all()  # the four RGBA channels are equal


def unpadded(rle: list[int]) -> list[int]:
    out = list(rle)
    while out and out[-1] == 0:
        out.pop()
    return out


def test_an_empty_image_is_refused():
    with pytest.raises(ValueError):
        mask_to_rle(np.zeros((0, 4), bool))
