"""A page of derived masks over their photos, to check by eye what the COCO / BOP /
correspondence exports will contain: a sample of photos per category, each object's visible
mask tinted in its colour, the part another object hides hatched in the same colour, the
COCO box drawn, and per object its key, quality and visible fraction.

The masks come from the same code as the exports (ls_admin.export_views: the renderer's ray
casting and the z-buffer over the photo's labelled objects).
"""
from __future__ import annotations

import base64
import html
import io
import numpy as np

from ls_admin.export_coco import exported
from ls_admin.export_source import Label
from ls_admin.export_views import Photo, group_photos, render_photo
from pose6d.dataset import Dataset
from pose6d.errors import DataError
from pose6d.inout import read_image
from pose6d.visibility import coco_bbox

COLOURS = np.array([[46, 204, 113], [52, 152, 219], [231, 76, 60], [241, 196, 15],
                    [155, 89, 182], [26, 188, 156]], dtype=np.float32)
MAX_WIDTH = 480  # pixels of a picture on the page
CSS = ("body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
       ".grid{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;max-width:480px}"
       "figcaption{font-size:12px;color:#444}img{border:1px solid #ccc;display:block}"
       ".sw{display:inline-block;width:10px;height:10px;margin-right:4px}")


def sample_photos(labels: list[Label], per_category: int = 3
                  ) -> list[tuple[tuple[str, str], list[Label]]]:
    """Up to ``per_category`` photos of each category: those with most exported objects first
    (occlusions show there), then by name (deterministic)."""
    by_cat: dict[str, list] = {}
    for (cat, name), labs in group_photos([l for l in labels if exported(l, False)]):
        by_cat.setdefault(cat, []).append(((cat, name), labs))
    out = []
    for cat in sorted(by_cat):
        out += sorted(by_cat[cat], key=lambda g: (-len(g[1]), g[0][1]))[:per_category]
    return out


def overlay_picture(photo: Photo, image: np.ndarray | None) -> np.ndarray:
    """(H, W, 3) uint8: the photo (grey when missing) with each object's visible mask tinted
    and its hidden part hatched, in the object's colour."""
    h, w = photo.height, photo.width
    base = np.full((h, w, 3), 128, np.float32) if image is None or image.shape[:2] != (h, w) \
        else image[..., :3].astype(np.float32)
    out = base * 0.75
    hatch = ((np.add.outer(np.arange(h), np.arange(w)) // 4) % 2).astype(bool)
    for n, view in enumerate(photo.views):
        colour = COLOURS[n % len(COLOURS)]
        out[view.visible] = 0.45 * out[view.visible] + 0.55 * colour
        hidden = view.amodal & ~view.visible & hatch
        out[hidden] = 0.3 * out[hidden] + 0.7 * colour
    return np.clip(out, 0, 255).astype(np.uint8)


def picture_png(picture: np.ndarray, photo: Photo) -> str:
    """The picture with each object's COCO box, scaled to MAX_WIDTH, as a data: URL."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(picture)
    draw = ImageDraw.Draw(im)
    for n, view in enumerate(photo.views):
        x, y, bw, bh = coco_bbox(view.visible)
        if bw:
            draw.rectangle([x, y, x + bw - 1, y + bh - 1],
                           outline=tuple(int(c) for c in COLOURS[n % len(COLOURS)]), width=2)
    if im.width > MAX_WIDTH:
        im = im.resize((MAX_WIDTH, round(im.height * MAX_WIDTH / im.width)))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def masks_page(labels: list[Label], dataset: Dataset, per_category: int = 3) -> str:
    """The page (module docstring) as a self-contained HTML string."""
    figures: dict[str, list[str]] = {}
    for (cat, name), labs in sample_photos(labels, per_category):
        photo = render_photo(cat, name, labs, dataset, whole=True)  # BOP's visib_fract
        try:
            image = read_image(dataset.image_path(labs[0].key))
        except DataError:
            image = None
        rows = "".join(
            f'<br><span class=sw style="background:rgb{tuple(int(c) for c in COLOURS[n % 6])}">'
            f"</span>{html.escape(str(lab.key))}: {html.escape(lab.object_status)}, "
            f"{100 * view.visib_fract:.0f}% visible (of the whole silhouette)"
            for n, (lab, view) in enumerate(zip(photo.labels, photo.views)))
        note = "" if image is not None else " (photo missing: grey)"
        figures.setdefault(cat, []).append(
            f'<figure><img src="{picture_png(overlay_picture(photo, image), photo)}" '
            f'alt="{html.escape(name)}"><figcaption>{html.escape(name)}{note}{rows}'
            "</figcaption></figure>")
    parts = ["<h1>Derived masks</h1><p>Visible masks (tinted) and hidden parts (hatched) as "
             "the COCO, BOP and correspondence exports write them, rendered from the labelled "
             "poses; boxes are the COCO boxes. Skipped and bad-quality objects are not drawn "
             "(they hide nothing).</p>"]
    if not figures:
        parts.append("<p>No labelled objects yet.</p>")
    for cat, figs in figures.items():
        parts += [f"<h2>{html.escape(cat)}</h2><div class=grid>", *figs, "</div>"]
    return ("<!doctype html><html><head><meta charset=utf-8><title>pose6d derived masks</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")

