"""Generate labeling_config/pose6d.xml (the Label Studio labeling config) from pose6d.labeling.

Every tag name, Number range / step, label, colour and hotkey comes from pose6d/labeling.py and
pose6d/labels.py; this script only lays them out. The committed XML must equal its output:

    python scripts/make_labeling_config.py            # (re)write labeling_config/pose6d.xml
    python scripts/make_labeling_config.py --check    # exit 1 if the committed file is stale
    python scripts/make_labeling_config.py --out -    # print to stdout
    python scripts/make_labeling_config.py --max-photo-size 1600x1200 --out big.xml
                                                      # px / py sliders for larger photos
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pose6d import labeling as L
from pose6d.inout import atomic_write_bytes
from pose6d.labeling_config import build_config

def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1600x1200, not {text!r}")
    return int(match.group(1)), int(match.group(2))


def main(argv: list[str] | None = None, default_out: Path | None = None) -> int:
    """default_out: the repository's labeling_config/pose6d.xml (scripts/ passes it); without
    it the config goes to stdout unless --out says otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--out", default=str(default_out or "-"),
                        help=f"output file, '-' for stdout (default: {default_out or '-'})")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if --out differs from the generated config")
    parser.add_argument("--max-photo-size", metavar="WxH", type=_size, default=None,
                        help="largest photo of the dataset: px / py sliders span -W..2W and "
                             "-H..2H (Label Studio refuses to submit a value outside them; "
                             f"default {L.PHOTO_SIZE[0]}x{L.PHOTO_SIZE[1]})")
    args = parser.parse_args(argv)
    text = build_config(args.max_photo_size)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else None
        if current != text:
            print(f"error: {out} is stale; run scripts/make_labeling_config.py", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    atomic_write_bytes(out, text.encode("utf-8"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # python -m pose6d.cli.make_labeling_config
    raise SystemExit(main())
