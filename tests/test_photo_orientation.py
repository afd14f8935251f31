"""Photos whose EXIF orientation turns them on screen: browsers show them turned, the poses are
in their stored pixels (PIL, PASCAL3D+), so overlays and pins would not line up. Task making and
the backend refuse them with a message that says what to do; exports still read them."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps

from backend_helpers import command_context, interactive_body, make_client, task_for
from label_studio_server import chromium_launch_kwargs
from pose6d.errors import DataError
from pose6d.inout import image_size
from test_tasks import make


def jpeg_with_orientation(pixels: np.ndarray, orientation: int | None) -> bytes:
    """A JPEG of ``pixels`` (H, W, 3) uint8 carrying EXIF orientation ``orientation`` (None: no
    EXIF at all)."""
    buf = io.BytesIO()
    im = Image.fromarray(pixels)
    if orientation is None:
        im.save(buf, format="JPEG", quality=95)
    else:
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        im.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def shown_differently(data: bytes) -> bool:
    """PIL's own reading of the tag (ImageOps.exif_transpose, what a viewer applies): whether
    the picture shown differs from the stored pixels."""
    with Image.open(io.BytesIO(data)) as im:
        stored = np.asarray(im.convert("RGB"))
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    return stored.shape != shown.shape or not np.array_equal(stored, shown)


@pytest.mark.parametrize("orientation", [None, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_a_photo_turned_on_screen_is_refused_for_labelling(tmp_path, orientation):
    rng = np.random.default_rng(1)
    pixels = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
    data = jpeg_with_orientation(pixels, orientation)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    assert image_size(path) == (40, 30)  # exports and reports read its stored pixels as before
    if shown_differently(data):
        with pytest.raises(DataError, match=f"EXIF orientation {orientation}.*exiftool"):
            image_size(path, for_labelling=True)
    else:
        assert image_size(path, for_labelling=True) == (40, 30)


def test_task_making_and_the_backend_refuse_a_turned_photo(tiny_dataset, tiny_keys, tmp_path):
    key = tiny_keys[2]
    path = tiny_dataset.image_path(key)
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    path.write_bytes(jpeg_with_orientation(pixels, 6))
    tasks, run = make(tiny_dataset, tmp_path)
    assert [t["data"]["object_key"] for t in tasks] == [str(k) for k in tiny_keys[:2]]
    assert f"skipped {key}: " in run.stderr and "EXIF orientation 6" in run.stderr
    assert "turned by 90 deg clockwise" in run.stderr

    client = make_client(tiny_dataset)
    turned = {"id": 2, "data": {"object_key": str(key)}}
    res = client.post("/predict", json={"tasks": [task_for(tiny_dataset, tiny_keys[0], 1), turned]})
    assert res.status_code == 200
    assert res.json["results"][0]["result"] and res.json["results"][1] == []
    numbers = {"azimuth": 0, "elevation": 10, "theta": 0, "distance": 5, "px": 10, "py": 10}
    inter = client.post("/predict", json=interactive_body(turned, command_context(numbers, 1, "a+")))
    message = json.dumps(inter.json)
    assert inter.status_code == 200 and "EXIF orientation 6" in message and "exiftool" in message
    assert "skip it and tell your admin" in message  # the annotator cannot fix the file


def test_chromium_shows_the_photo_turned_whatever_the_page_says(tmp_path):
    """Why no page rule (the labeling config's Style) can fix it: Chromium reports and draws the
    turned picture, naturalWidth included, even under CSS image-orientation: none."""
    from playwright.sync_api import sync_playwright

    import base64

    pixels = np.zeros((20, 60, 3), np.uint8)
    pixels[:, :10] = (255, 0, 0)  # red on the left of the stored pixels
    src = "data:image/jpeg;base64," + base64.b64encode(jpeg_with_orientation(pixels, 6)).decode()
    html = (f'<img id="a" src="{src}"><img id="b" style="image-orientation: none" src="{src}">'
            '<canvas id="c" width="60" height="60"></canvas>')
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            page = browser.new_page()
            page.set_content(html)
            page.wait_for_function("a.complete && b.complete")
            sizes = page.evaluate("[a.naturalWidth, a.naturalHeight, b.naturalWidth, b.naturalHeight]")
            # drawn onto a canvas, as an image viewer's stage does: red along the top (the
            # stored left turned by 90 deg clockwise), not along the left
            top, left = page.evaluate(
                "(() => { const c = document.getElementById('c').getContext('2d');"
                " c.drawImage(b, 0, 0); const px = (x, y) => c.getImageData(x, y, 1, 1).data[0];"
                " return [px(10, 3), px(3, 40)]; })()")
        finally:
            browser.close()
    assert sizes == [20, 60, 20, 60]
    assert top > 200 and left < 60
