"""Label Studio's brush RLE (the rle-pack format of its frontend), vectorised with numpy.

A mask becomes a flat RGBA byte array (4 equal channels per pixel), then bit-packed runs:
header = 32-bit value count, 5-bit word size - 1, four 4-bit run-length field sizes - 1; then
per run: 1 flag bit (1 = repeated run, 0 = literals), 2-bit size index, the run length - 1, and
the 8-bit value. label_studio_sdk.converter.brush's encoder does the same in a Python loop
(tests/test_brush_rle.py checks the two agree, and decodes ours with the SDK's decoder).
"""
from __future__ import annotations

import numpy as np

RLE_SIZES = (3, 4, 8, 16)
MAX_RUN = 1 << 16


def mask_to_rle(mask: np.ndarray, value: int = 255) -> list[int]:
    """Encode an (H, W) bool/uint8 mask (nonzero = inside) as Label Studio brush RLE bytes.

    value: 1..255, what every channel of an inside pixel holds. Label Studio paints a brush
    region in its label's colour but keeps the alpha channel, so a value below 255 draws the
    region translucent (on top of the region's own opacity).
    """
    if not 1 <= int(value) <= 255:
        raise ValueError(f"value must be 1..255, got {value}")
    flat = np.asarray(mask).reshape(-1) != 0
    if flat.size == 0:
        raise ValueError("cannot encode an empty mask")
    # Runs are found per pixel, then stretched x4: the RGBA channels of a pixel are equal.
    ends = np.append(np.flatnonzero(flat[1:] != flat[:-1]), flat.size - 1)
    lengths = np.diff(np.append(-1, ends)) * 4
    return encode_runs(np.where(flat[ends], int(value), 0), lengths, 4 * flat.size)


def encode_runs(run_values: np.ndarray, lengths: np.ndarray, n: int) -> list[int]:
    """Encode runs (value, length) that add up to ``n`` values."""
    run_values = np.asarray(run_values, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    # Runs longer than 2^16 are split into full 2^16 chunks plus the rest.
    chunks = (lengths - 1) // MAX_RUN + 1
    run_values = np.repeat(run_values, chunks)
    first = np.cumsum(chunks) - chunks
    lengths = np.repeat(lengths, chunks)
    offset = np.arange(lengths.size) - np.repeat(first, chunks)
    last = offset == np.repeat(chunks, chunks) - 1
    lengths = np.where(last, lengths - offset * MAX_RUN, MAX_RUN)
    size_index = np.searchsorted(np.array([8, 16, 256]), lengths, side="left")
    field = np.array(RLE_SIZES)[size_index]
    flag = (lengths > 1).astype(np.int64)
    code = (flag << 2 | size_index)
    code = (code << field) | (lengths - 1)
    code = (code << 8) | run_values
    nbits = 3 + field + 8
    header = (n << 5 | 7)
    for s in RLE_SIZES:
        header = header << 4 | (s - 1)
    codes = np.concatenate([[header], code]).astype(np.uint64)
    widths = np.concatenate([[32 + 5 + 16], nbits]).astype(np.int64)
    return _pack_bits(codes, widths)


def _pack_bits(codes: np.ndarray, widths: np.ndarray) -> list[int]:
    total = int(widths.sum())
    starts = np.cumsum(widths) - widths
    owner = np.repeat(np.arange(codes.size), widths)
    pos_in = np.arange(total) - starts[owner]
    shift = (widths[owner] - 1 - pos_in).astype(np.uint64)
    bits = ((codes[owner] >> shift) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits).tolist()  # zero-padded to whole bytes, as the frontend expects
