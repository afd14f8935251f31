"""Render a CAD mesh at a pose over a photo (or a blank canvas) and write the overlay PNG.

Angles in degrees, centre in pixels, PASCAL3D+ / ImageNet3D camera (docs/camera.md).
Example:
  python scripts/render_overlay.py --cad CAD/car/01.off --image photo.JPEG --azimuth 30 \\
      --elevation 15 --theta 0 --distance 5 --px 320 --py 240 --out overlay.png --mask mask.png
"""
from __future__ import annotations

import argparse
import math
import re

from pose6d.camera import DEFAULT_VIEWPORT
from pose6d.cli import fail


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cad", required=True, help="CAD mesh (.off)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="photo to draw the overlay on")
    src.add_argument("--size", help="blank canvas WIDTHxHEIGHT instead of a photo, e.g. 640x480")
    for name, unit in (("azimuth", "degrees"), ("elevation", "degrees"), ("theta", "degrees"),
                       ("distance", "CAD units, > 0"), ("px", "pixels"), ("py", "pixels")):
        p.add_argument(f"--{name}", type=float, required=True, help=f"{name} ({unit})")
    p.add_argument("--viewport", type=float, default=DEFAULT_VIEWPORT,
                   help="pixels per unit focal length (default %(default)g, PASCAL3D+)")
    p.add_argument("--out", required=True, help="overlay PNG to write")
    p.add_argument("--mask", help="also write the silhouette: 8-bit PNG, 255 inside, 0 outside")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from pose6d.cad_library import CadError, CadMesh, read_off
    from pose6d.camera import InvalidPoseError, Pose
    from pose6d.errors import DataError
    from pose6d.inout import read_image, write_image
    from pose6d.overlay import render_overlay

    for name in ("azimuth", "elevation", "theta", "distance", "px", "py", "viewport"):
        if not math.isfinite(getattr(args, name)):
            fail(f"--{name} must be a finite number, got {getattr(args, name)}")
    try:
        pose = Pose.from_degrees(args.azimuth, args.elevation, args.theta, args.distance,
                                 args.px, args.py, viewport=args.viewport)
        vertices, faces = read_off(args.cad)
        if args.image:
            image = read_image(args.image)
        else:
            m = re.fullmatch(r"(\d+)[xX](\d+)", args.size)
            if not m or not (0 < int(m.group(1)) <= 16384 and 0 < int(m.group(2)) <= 16384):
                fail(f"--size must be WIDTHxHEIGHT (1..16384), got {args.size!r}")
            image = np.full((int(m.group(2)), int(m.group(1)), 3), 255, dtype=np.uint8)
        mesh = CadMesh("cli", 0, args.cad, vertices, faces)
        overlay, rendered = render_overlay(image, mesh, pose)
        write_image(args.out, overlay)
        if args.mask:
            write_image(args.mask, rendered.full_mask.astype(np.uint8) * 255)
    except (InvalidPoseError, CadError, DataError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write output: {exc}")
    return 0


if __name__ == "__main__":  # python -m pose6d.cli.render_overlay
    raise SystemExit(main())
