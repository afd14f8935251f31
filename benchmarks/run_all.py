#!/usr/bin/env python3
"""Run every benchmark (benchmarks/bench_*.py) as a subprocess with short settings, collect the
figures each prints and show one summary table: each figure next to its baseline from the same
run. A benchmark that is missing, fails or times out is listed as such and the exit code is 1.

Short settings: ``--quick`` when the benchmark's --help offers it, else a known short argument
list (below), else its defaults; ``--full`` runs every benchmark with its defaults.
Figures are read from lines ``figure: <name> | <value> <unit> | <baseline name> | <value> <unit>``
(the convention for new benchmarks) or, for the older ones, from their tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
EXPECTED = ("render", "predict", "interactive", "import", "export", "load")
SHORT_ARGS = {  # for benchmarks without --quick
    "render": ["--repeats", "5"],
    "predict": ["--repeats", "15"],
    "export": ["--objects", "2000", "--baseline-objects", "300"],
}


@dataclasses.dataclass
class Figure:
    name: str
    value: str
    baseline_name: str = ""
    baseline: str = ""


@dataclasses.dataclass
class Outcome:
    bench: str
    status: str  # ok | FAILED (exit n) | MISSING | TIMEOUT
    seconds: float
    figures: list[Figure]
    tail: str = ""  # the last output lines, shown for a failure


# --- parsers: stdout -> figures ---

NUM = r"(-?[\d.]+(?:e[+-]?\d+)?)"


def parse_figure_lines(text: str) -> list[Figure]:
    """``figure: name | value | baseline name | value`` lines (any benchmark may print them)."""
    out = []
    for line in text.splitlines():
        if line.startswith("figure:"):
            parts = [p.strip() for p in line[len("figure:"):].split("|")] + ["", ""]
            out.append(Figure(*parts[:4]))
    return out


def parse_render(text: str) -> list[Figure]:
    """bench_render's rows: mesh, triangles, ours p50/p90, original tool's p50/p90, speed-up."""
    row = re.compile(rf"^(.+?)\s+(\d+)\s+{NUM}ms\s+{NUM}ms\s+{NUM}ms\s+{NUM}ms\s+{NUM}x$")
    out = []
    for line in text.splitlines():
        if m := row.match(line.strip()):
            mesh, tris, o50, _, g50, _, speed = m.groups()
            out.append(Figure(f"render {mesh} ({tris} tris) p50", f"{o50} ms",
                              "original tool p50", f"{g50} ms ({speed}x)"))
    return out


def parse_predict(text: str) -> list[Figure]:
    """bench_predict's rows: render alone, overlay regions, /predict over HTTP (p50, p95)."""
    rows = {}
    for line in text.splitlines():
        if m := re.match(rf"^(.+?)\s+{NUM}ms\s+{NUM}ms$", line.strip()):
            rows[m.group(1)] = (m.group(2), m.group(3))
    http, alone = rows.get("/predict over HTTP"), rows.get("overlay render alone")
    if not (http and alone):
        return []
    return [Figure("/predict over HTTP p50", f"{http[0]} ms", "render alone p50", f"{alone[0]} ms"),
            Figure("/predict over HTTP p95", f"{http[1]} ms", "render alone p95", f"{alone[1]} ms")]


def parse_export(text: str) -> list[Figure]:
    """bench_export's rows: name, objects, seconds, objects/s, x baseline, time for 10k."""
    row = re.compile(rf"^(.+?)\s+(\d+)\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}s$")
    rows = [m.groups() for line in text.splitlines() if (m := row.match(line.strip()))]
    base = next((r for r in rows if r[0].startswith("baseline")), None)
    return [Figure(f"export {name} objects/s", rate, base[0] if base else "",
                   f"{base[3]}" if base else "")
            for name, _, _, rate, _, _ in rows if not name.startswith("baseline")]


PARSERS: dict[str, Callable[[str], list[Figure]]] = {
    "render": parse_render, "predict": parse_predict, "export": parse_export}


def figures_of(bench: str, text: str) -> list[Figure]:
    """Figures from the convention lines first, else the benchmark's own table parser."""
    return parse_figure_lines(text) or PARSERS.get(bench, lambda _: [])(text)


# --- running ---


def script_of(bench: str) -> Path:
    return HERE / f"bench_{bench}.py"


def discover() -> list[str]:
    """The expected benchmarks in order, then any other bench_*.py found."""
    found = sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))
    return list(EXPECTED) + [b for b in found if b not in EXPECTED]


def short_args(bench: str, full: bool) -> list[str]:
    """``--quick`` if the benchmark offers it, else SHORT_ARGS, else nothing."""
    if full:
        return []
    try:
        help_text = subprocess.run([PYTHON, str(script_of(bench)), "--help"], capture_output=True,
                                   text=True, timeout=120).stdout
    except subprocess.TimeoutExpired:
        help_text = ""
    return ["--quick"] if "--quick" in help_text else SHORT_ARGS.get(bench, [])


def run_one(bench: str, full: bool, timeout: float) -> Outcome:
    """Run one benchmark; never raises."""
    script = script_of(bench)
    if not script.is_file():
        return Outcome(bench, "MISSING", 0.0, [])
    cmd = [PYTHON, str(script), *short_args(bench, full)]
    print(f"--- {bench}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Outcome(bench, "TIMEOUT", time.monotonic() - t0, figures_of(bench, out), out[-800:])
    seconds = time.monotonic() - t0
    print(proc.stdout, end="", flush=True)
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
    return Outcome(bench, status, seconds, figures_of(bench, proc.stdout), tail)


# --- the summary ---


def summary_table(outcomes: list[Outcome]) -> str:
    """One row per figure (or one per benchmark without figures)."""
    rows = [("benchmark", "status", "figure", "value", "baseline (same run)", "baseline value")]
    for o in outcomes:
        status = f"{o.status} {o.seconds:.0f}s" if o.status != "MISSING" else o.status
        if not o.figures:
            note = "no figures found in its output" if o.status == "ok" else ""
            rows.append((o.bench, status, note, "", "", ""))
        for i, f in enumerate(o.figures):
            rows.append((o.bench if i == 0 else "", status if i == 0 else "", f.name, f.value,
                         f.baseline_name, f.baseline))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated benchmark names (default: all)")
    p.add_argument("--full", action="store_true", help="each benchmark's own defaults (slow)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per benchmark")
    args = p.parse_args(argv)
    benches = args.only.split(",") if args.only else discover()
    outcomes = [run_one(b.strip(), args.full, args.timeout) for b in benches]
    print("\n" + summary_table(outcomes))
    bad = [o for o in outcomes if o.status != "ok"]
    for o in bad:
        print(f"\n{o.bench}: {o.status}" + (f"\n{o.tail}" if o.tail else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
