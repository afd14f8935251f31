"""Photo-like images for the demo dataset: textured backdrops and objects painted with shading,
a contact shadow and antialiased edges. Float32 RGB in [0, 255] throughout."""
from __future__ import annotations

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose, scale_pose
from pose6d.renderer import render


def smooth_noise(rng: np.random.Generator, width: int, height: int, cell: int) -> np.ndarray:
    """Value noise (H, W) float32 in [0, 1]: a random grid every ``cell`` px, bicubic between."""
    from PIL import Image

    gw, gh = width // cell + 3, height // cell + 3
    grid = Image.fromarray(rng.random((gh, gw), dtype=np.float32))
    big = np.asarray(grid.resize((gw * cell, gh * cell), Image.Resampling.BICUBIC))
    return np.clip(big[cell:cell + height, cell:cell + width], 0.0, 1.0)


def muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB (3,) float32 of low to moderate saturation, as most of a photo is."""
    import colorsys

    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.5), rng.uniform(0.25, 0.9))
    return np.asarray(rgb, dtype=np.float32) * 255.0


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A photo-like backdrop (H, W, 3) float32 in [0, 255]: a floor below a horizon, a smooth
    texture or a gradient, then a few blurred blobs."""
    from PIL import Image, ImageDraw, ImageFilter

    c1, c2 = muted_colour(rng), muted_colour(rng)
    octaves = ((160, 0.55), (48, 0.3), (8, 0.15))
    tex = sum(a * smooth_noise(rng, width, height, c) for c, a in octaves)[..., None]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    kind = int(rng.integers(3))
    if kind == 0:
        horizon = rng.uniform(0.3, 0.7)
        t = np.clip((y - horizon) * height / 3.0, 0.0, 1.0)  # a 3-px soft horizon
        img = c1 * (1.1 - 0.3 * y) * (0.9 + 0.2 * tex) * (1 - t) + c2 * (0.8 + 0.4 * tex) * t
    elif kind == 1:
        t = np.clip((tex - 0.5) * 2.0 + 0.5, 0.0, 1.0)
        img = c1 * (1 - t) + c2 * t
    else:
        a = rng.uniform(0.0, 2.0 * np.pi)
        t = np.clip(0.5 + (x - 0.5) * np.cos(a) + (y - 0.5) * np.sin(a), 0.0, 1.0)
        img = c1 * (1 - t) + c2 * t + 40.0 * (tex - 0.5)
    for _ in range(int(rng.integers(1, 6))):
        blob = Image.new("L", (width, height), 0)
        (cx, cy), (rx, ry) = rng.uniform(0, (width, height)), rng.uniform(20, 0.3 * width, 2)
        draw, corners = ImageDraw.Draw(blob), [cx - rx, cy - ry, cx + rx, cy + ry]
        (draw.ellipse if rng.random() < 0.6 else draw.rectangle)(corners, fill=255)
        blob = blob.filter(ImageFilter.GaussianBlur(float(rng.uniform(4, 30))))
        m = np.asarray(blob, dtype=np.float32)[..., None] / 255.0 * rng.uniform(0.25, 0.7)
        img = img * (1 - m) + muted_colour(rng) * m
    return np.clip(img, 0.0, 255.0).astype(np.float32)


def composite_object(image: np.ndarray, mesh: CadMesh, pose: Pose, colour: np.ndarray) -> None:
    """Paint ``mesh`` at ``pose`` into ``image`` (H, W, 3) float32 in place: a soft contact
    shadow, Lambert shading with a faint highlight, edges antialiased by 2x2 supersampling."""
    h, w = image.shape[:2]
    big = scale_pose(pose, 2.0)  # each pixel's 2x2 sub-pixels (col +- 0.25)
    r = render(mesh, big, 2 * w, 2 * h)
    x0, y0, x1, y1 = r.box
    if x1 <= x0 or y1 <= y0:
        return
    ex0, ey0, ex1, ey1 = x0 - x0 % 2, y0 - y0 % 2, x1 + x1 % 2, y1 + y1 % 2  # even-aligned

    def grow(a):
        return np.pad(a, ((y0 - ey0, ey1 - y1), (x0 - ex0, ex1 - x1)))

    def down(a):
        return a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2, *a.shape[2:]).mean(axis=(1, 3))

    mask, shade = grow(r.mask).astype(np.float32), grow(r.shade)[..., None]
    lit = colour * (0.3 + 0.7 * shade) + 60.0 * shade ** 24
    lit[grow(r.edges)] *= 0.85  # faint creases, as real part boundaries catch less light
    alpha, premult = down(mask), down(lit * mask[..., None])
    _shadow(image, alpha, ex0 // 2, ey0 // 2)
    win = image[ey0 // 2:ey1 // 2, ex0 // 2:ex1 // 2]
    win *= 1.0 - alpha[..., None]
    win += premult


def _shadow(image: np.ndarray, alpha: np.ndarray, x: int, y: int, strength: float = 0.4) -> None:
    """Darken ``image`` under a blurred, slightly lowered copy of the object's alpha at (x, y)."""
    from PIL import Image, ImageFilter

    radius = 2.0 + 0.04 * alpha.shape[0]
    shift, p = int(0.03 * alpha.shape[0]) + 1, int(3 * radius) + 1
    blur = Image.fromarray((np.pad(alpha, p) * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(radius))
    factor = 1.0 - strength * np.asarray(blur, dtype=np.float32) / 255.0
    x, y = x - p, y - p + shift
    h, w = image.shape[:2]
    ax0, ay0 = max(x, 0), max(y, 0)
    ax1, ay1 = min(x + factor.shape[1], w), min(y + factor.shape[0], h)
    if ax1 > ax0 and ay1 > ay0:
        image[ay0:ay1, ax0:ax1] *= factor[ay0 - y:ay1 - y, ax0 - x:ax1 - x, None]
