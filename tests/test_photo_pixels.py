"""The photo's pixels as the backend reads them (pose6d.inout.read_image: auto-fit's evidence,
review and evaluation pictures) are the pixels the annotator sees: the reference is Chromium's
own decoding, drawn onto a canvas and read back, for each kind of file a browser shows."""
from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from label_studio_server import chromium_launch_kwargs
from pose6d.errors import DataError
from pose6d.inout import image_size, read_image

HEIGHT, WIDTH = 16, 32


def png_bytes(pixels: np.ndarray, color_type: int, depth: int) -> bytes:
    """A PNG written by hand (PIL cannot write 16-bit colour): ``pixels`` (H, W) or (H, W, C),
    PNG colour type 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA; ``depth`` 8 or 16 bits."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def pil_bytes(mode: str, fmt: str, **save) -> bytes:
    rng = np.random.default_rng(len(mode) + len(fmt))
    rgb = (rng.random((HEIGHT, WIDTH, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buf, format=fmt, **save)
    return buf.getvalue()


def photos() -> dict[str, tuple[str, bytes]]:
    """{name: (MIME subtype, file bytes)}: opaque photos of each kind."""
    rng = np.random.default_rng(0)
    grey16 = (rng.random((HEIGHT, WIDTH)) * 65535).astype(np.uint16)
    rgb16 = (rng.random((HEIGHT, WIDTH, 3)) * 65535).astype(np.uint16)
    opaque16 = np.full_like(grey16, 65535)
    return {
        "grey 16-bit PNG": ("png", png_bytes(grey16, 0, 16)),
        "grey + alpha 16-bit PNG": ("png", png_bytes(np.dstack([grey16, opaque16]), 4, 16)),
        "RGB 16-bit PNG": ("png", png_bytes(rgb16, 2, 16)),
        "RGBA 16-bit PNG": ("png", png_bytes(np.dstack([rgb16, opaque16]), 6, 16)),
        "grey PNG": ("png", png_bytes((grey16 >> 8).astype(np.uint8), 0, 8)),
        "1-bit PNG": ("png", pil_bytes("1", "PNG")),
        "palette PNG": ("png", pil_bytes("P", "PNG")),
        "RGB JPEG": ("jpeg", pil_bytes("RGB", "JPEG", quality=95)),
        "grey JPEG": ("jpeg", pil_bytes("L", "JPEG", quality=95)),
        "CMYK JPEG": ("jpeg", pil_bytes("CMYK", "JPEG", quality=100)),
        "GIF": ("gif", pil_bytes("P", "GIF")),
        "BMP": ("bmp", pil_bytes("RGB", "BMP")),
        "WebP": ("webp", pil_bytes("RGB", "WEBP", lossless=True)),
    }


@pytest.fixture(scope="module")
def chromium_page():
    """One Chromium page for the module's photos."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            yield browser.new_page()
        finally:
            browser.close()


def show(page, data: bytes, kind: str = "octet-stream") -> tuple[int, int]:
    """Load ``data`` as the page's only image (MIME subtype ``kind``): its (naturalWidth,
    naturalHeight), (0, 0) when Chromium cannot show it."""
    src = f"data:image/{kind};base64," + base64.b64encode(data).decode()
    page.set_content(f'<img id="a" src="{src}">'
                     f'<canvas id="c" width="{WIDTH}" height="{HEIGHT}"></canvas>')
    page.wait_for_function("a.complete")
    return tuple(page.evaluate("[a.naturalWidth, a.naturalHeight]"))


@pytest.fixture(scope="module")
def shown_in_chromium(chromium_page) -> dict[str, np.ndarray]:
    """{name: (H, W, 3) the RGB Chromium draws for that photo}."""
    out = {}
    for name, (kind, data) in photos().items():
        assert show(chromium_page, data, kind) == (WIDTH, HEIGHT), name
        rgba = chromium_page.evaluate(
            "(() => { const c = document.getElementById('c').getContext('2d');"
            f" c.drawImage(a, 0, 0); return Array.from(c.getImageData(0, 0, {WIDTH},"
            f" {HEIGHT}).data); }})()")
        out[name] = np.array(rgba, np.int64).reshape(HEIGHT, WIDTH, 4)[..., :3]
    return out


@pytest.mark.parametrize("name", list(photos()))
def test_read_image_gives_the_pixels_chromium_shows(name, shown_in_chromium, tmp_path):
    path = tmp_path / "photo"
    path.write_bytes(photos()[name][1])
    ours = read_image(path)
    assert ours.shape == (HEIGHT, WIDTH, 3) and ours.dtype == np.uint8
    shown = shown_in_chromium[name]
    assert shown.std() > 20  # the browser drew the photo, not a blank canvas
    np.testing.assert_array_equal(ours.astype(np.int64), shown)


def mpo_bytes() -> bytes:
    """A two-picture MPO, as phones write (PIL reports the format MPO)."""
    rgb = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="MPO", save_all=True,
                              append_images=[Image.fromarray(255 - rgb)])
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "AVIF", "TIFF",
                                 "PPM", "ICO", "TGA", "JPEG2000", "PCX", "SGI", "DDS", "QOI",
                                 "DIB", "ICNS"])
def test_a_photo_to_label_is_a_file_chromium_shows_at_its_size(fmt, chromium_page, tmp_path):
    """Task making and the backend (image_size(..., for_labelling=True)) take a photo exactly
    when Chromium shows it at the size PIL reads (TIFF, PPM, ... it shows not at all)."""
    if fmt == "MPO":
        data = mpo_bytes()
    else:
        try:
            data = pil_bytes("RGB", fmt)
        except (KeyError, OSError, ValueError) as exc:
            pytest.skip(f"PIL cannot write {fmt} here: {exc}")
    path = tmp_path / "photo.jpg"  # the dataset's suffixes say nothing of what a file holds
    path.write_bytes(data)
    with Image.open(path) as im:
        assert im.format == fmt
        size = im.size  # an icon's: its largest picture's
    assert image_size(path) == size  # exports and reports read it as before
    if show(chromium_page, data) == size:
        assert image_size(path, for_labelling=True) == size
    else:
        with pytest.raises(DataError, match=f"is a {fmt} file.*PNG or JPEG"):
            image_size(path, for_labelling=True)
