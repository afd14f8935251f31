"""The blind A/B evaluation's results (``pose6d-evaluate results``, the report's section).

Ratings come by the webhook (label_sync.evaluation, stored by the sync engine) and are pulled
again from the project through the SDK (``pull_ratings``), so no figure depends on a webhook
having arrived. Each rater counts once per pair (their newest rating). Per category and over
all: how often source B (by default the human's pose) was rated better than source A (the
model's) among the decisive ratings, with a 95% Wilson score interval, and the ties apart; plus
the objects where A won (more ratings for A than for B): the ones a reviewer should look at.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from collections import defaultdict
from typing import Any

from label_sync.evaluation import LEFT, RIGHT, SAME, rating_from_annotation
from label_sync.quality_store import EVALUATION, Pair, QualityStore, Rating
from label_sync.records import SyncRejected
from ls_admin.connection import AdminError

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: a two-sided 95% interval


def wilson_interval(wins: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``wins`` / ``n`` (NaN, NaN when n = 0).

    Unlike p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and is not empty at 0 or n wins.
    """
    if n <= 0:
        return math.nan, math.nan
    p = wins / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and B's win rate over rows of {"winner": "a" | "b" | "tie"}."""
    b = sum(r["winner"] == "b" for r in rows)
    a = sum(r["winner"] == "a" for r in rows)
    low, high = wilson_interval(b, a + b)
    return {"ratings": len(rows), "b_wins": b, "a_wins": a, "ties": len(rows) - a - b,
            "b_win_rate": b / (a + b) if a + b else math.nan, "low": low, "high": high,
            "objects": len({r["object"] for r in rows})}


def winner(pair: Pair, choice: str, b_source: str) -> str:
    """"b", "a" or "tie": which source a verdict (LEFT / RIGHT / SAME) on ``pair`` chose."""
    if choice == SAME:
        return "tie"
    side = LEFT if choice == LEFT else RIGHT
    chosen = pair.left_source if side == LEFT else pair.right_source
    return "b" if chosen == b_source else "a"


def results(name: str, a_source: str, b_source: str, pairs: list[Pair],
            ratings: list[Rating]) -> dict[str, Any]:
    """The figures of one evaluation (module docstring) as a JSON-able dict."""
    by_id = {p.pair_id: p for p in pairs}
    newest: dict[tuple[str, str], Rating] = {}
    for r in ratings:  # one per rater and pair: their newest
        if r.pair_id in by_id:
            k = (r.pair_id, r.rater or f"annotation {r.annotation_id}")
            if k not in newest or (r.updated_us, r.annotation_id) > (newest[k].updated_us,
                                                                      newest[k].annotation_id):
                newest[k] = r
    rows = []
    for r in newest.values():
        pair = by_id[r.pair_id]
        rows.append({"object": pair.object_key, "category": pair.object_key.split("/")[0],
                     "winner": winner(pair, r.choice, b_source)})
    categories = defaultdict(list)
    per_object = defaultdict(list)
    for row in rows:
        categories[row["category"]].append(row)
        per_object[row["object"]].append(row)
    a_won, b_won = [], []
    for key, mine in sorted(per_object.items()):
        t = _tally(mine)
        if t["a_wins"] != t["b_wins"]:
            (a_won if t["a_wins"] > t["b_wins"] else b_won).append(
                {"object": key, "a_wins": t["a_wins"], "b_wins": t["b_wins"], "ties": t["ties"]})
    return {"evaluation": name, "a": a_source, "b": b_source, "pairs": len(pairs),
            "rated_pairs": len({r.pair_id for r in newest.values()}),
            "overall": _tally(rows),
            "per_category": {c: _tally(v) for c, v in sorted(categories.items())},
            "a_won": a_won, "b_won": b_won}


def store_results(store: QualityStore) -> list[dict[str, Any]]:
    """Every evaluation's figures from the store (the newest settings of each name)."""
    with store.transaction() as tx:
        names: dict[str, tuple[str, str]] = {}
        for p in tx.projects(EVALUATION):
            if "evaluation" in p.settings:
                names[str(p.settings["evaluation"])] = (str(p.settings["a"]), str(p.settings["b"]))
        return [results(n, a, b, tx.pairs(n), tx.ratings(n)) for n, (a, b) in sorted(names.items())]


@dataclasses.dataclass
class PullReport:
    """What pulling a project's annotations did."""

    annotations: int = 0
    stored: int = 0  # new ratings or newer versions
    unchanged: int = 0
    skipped: int = 0  # skipped tasks: no rating
    deleted: int = 0  # ratings of annotations no longer in the project
    rejected: list[str] = dataclasses.field(default_factory=list)

    def line(self, project_id: int) -> str:
        text = (f"project {project_id}: {self.annotations} annotations pulled: {self.stored} "
                f"ratings stored, {self.unchanged} unchanged, {self.skipped} skipped tasks, "
                f"{self.deleted} deleted ratings, {len(self.rejected)} not ratings")
        return text + (f" (e.g. {self.rejected[0]})" if self.rejected else "")


def pull_ratings(client: Any, store: QualityStore, project_id: int) -> PullReport:
    """Every annotation of the evaluation project, upserted as ratings (idempotent); ratings of
    this project whose annotation is gone (and older than the pull) stop counting."""
    from ls_admin.snapshot import annotated_tasks

    started_us = int(time.time() * 1e6)
    report, seen = PullReport(), set()
    for task in annotated_tasks(client, project_id):
        for annotation in task.get("annotations") or []:
            report.annotations += 1
            seen.add(annotation.get("id"))
            try:
                rating = rating_from_annotation(annotation, task, project_id)
            except SyncRejected as exc:
                report.rejected.append(f"annotation {annotation.get('id')}: {exc}")
                continue
            if rating is None:
                report.skipped += 1
                continue
            with store.transaction() as tx:
                if tx.upsert_rating(rating):
                    report.stored += 1
                else:
                    report.unchanged += 1
    with store.transaction() as tx:
        for r in tx.ratings(project_id=project_id):
            if r.annotation_id not in seen and r.updated_us < started_us:
                report.deleted += tx.delete_rating(r.annotation_id)
    return report


# --- Output. ---


CSV_COLUMNS = ("evaluation", "a", "b", "kind", "group", "ratings", "b_wins", "a_wins", "ties",
               "b_win_rate", "ci95_low", "ci95_high")


def to_csv(evaluations: list[dict[str, Any]]) -> str:
    """One row per evaluation overall ("overall"), per category ("category") and per object
    where A won ("a_won")."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)

    def num(x: float) -> str:
        return "" if isinstance(x, float) and math.isnan(x) else f"{x:.4f}"

    for e in evaluations:
        head = [e["evaluation"], e["a"], e["b"]]
        groups = [("overall", "all", e["overall"])] + [
            ("category", c, t) for c, t in e["per_category"].items()]
        for kind, group, t in groups:
            writer.writerow(head + [kind, group, t["ratings"], t["b_wins"], t["a_wins"], t["ties"],
                                    num(t["b_win_rate"]), num(t["low"]), num(t["high"])])
        for o in e["a_won"]:
            writer.writerow(head + ["a_won", o["object"], o["a_wins"] + o["b_wins"] + o["ties"],
                                    o["b_wins"], o["a_wins"], o["ties"], "", "", ""])
    return out.getvalue()


def _pct(x: float) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else f"{100 * x:.1f}%"


def format_results(e: dict[str, Any]) -> str:
    """A plain-text summary of one evaluation."""
    def line(name: str, t: dict[str, Any]) -> str:
        return (f"  {name:<24} B wins {t['b_wins']:>4}  A wins {t['a_wins']:>4}  ties "
                f"{t['ties']:>4}  B win rate {_pct(t['b_win_rate']):>6} (95% CI "
                f"{_pct(t['low'])} - {_pct(t['high'])})")

    lines = [f"evaluation {e['evaluation']!r}: A = {e['a']}, B = {e['b']}; {e['pairs']} pairs, "
             f"{e['rated_pairs']} rated, {e['overall']['ratings']} ratings",
             line("all", e["overall"])]
    lines += [line(c, t) for c, t in e["per_category"].items()]
    lines.append(f"objects where A won: {len(e['a_won'])}")
    lines += [f"  {o['object']} (A {o['a_wins']}, B {o['b_wins']}, ties {o['ties']})"
              for o in e["a_won"]]
    return "\n".join(lines)


def require_evaluation(evaluations: list[dict[str, Any]], name: str | None) -> list[dict[str, Any]]:
    """The evaluation named ``name`` (all when None); AdminError when the store has none."""
    chosen = [e for e in evaluations if name is None or e["evaluation"] == name]
    if not chosen:
        raise AdminError(f"no evaluation {name!r} in the store" if name else
                         "no evaluation in the store: run pose6d-evaluate create first")
    return chosen
