"""The report as one self-contained HTML page: tables plus matplotlib plots embedded as PNG.

``render_html(report)`` takes ``ls_admin.report.build_report``'s dict. Every name that came from
a user (annotators, categories) is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

ACC_LINES_DEG = (10.0, 30.0)  # pi/18 and pi/6: the thresholds of Acc@pi/18 and Acc@pi/6
COLOURS = {"done": "#2e7d32", "skipped": "#f9a825", "todo": "#cfd8dc", "pi6": "#1565c0",
           "pi18": "#90caf9", "hist": "#5c6bc0"}
CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}.ok{color:#2e7d32;font-weight:600}
.no{color:#b71c1c}.note{color:#666;font-size:13px}img{max-width:100%;margin:6px 0}
.kpi{display:inline-block;margin:4px 18px 4px 0}.kpi b{font-size:20px;display:block}"""


def _figure_png(fig) -> str:
    """A matplotlib figure as an <img> tag with the PNG inline (base64)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display; also safe from threads
    import matplotlib.pyplot as plt

    return plt


def progress_plot(rows: list[dict[str, Any]]) -> str:
    """Horizontal stacked bars per category: done, skipped, still to do."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    names = [r["category"] for r in rows]
    done = [r["done"] for r in rows]
    skipped = [r["skipped"] for r in rows]
    todo = [max(0, r["total"] - r["done"] - r["skipped"]) for r in rows]
    ax.barh(names, done, color=COLOURS["done"], label="done")
    ax.barh(names, skipped, left=done, color=COLOURS["skipped"], label="skipped")
    ax.barh(names, todo, left=[d + s for d, s in zip(done, skipped)], color=COLOURS["todo"],
            label="to do")
    ax.invert_yaxis()
    ax.set_xlabel("objects")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # never over a bar
    return _figure_png(fig)


def histogram(errors_deg: dict[str, list[float]], title: str) -> str:
    """Rotation-error histogram(s) in degrees (5-degree bins) with the Acc thresholds marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    bins = [5.0 * i for i in range(37)]
    ax.hist(list(errors_deg.values()), bins=bins, label=list(errors_deg), histtype="bar",
            stacked=len(errors_deg) > 1)
    for x, name in zip(ACC_LINES_DEG, ("pi/18", "pi/6")):
        ax.axvline(x, color="#b71c1c", ls="--", lw=1)
        ax.text(x + 1, ax.get_ylim()[1] * 0.9, name, color="#b71c1c", fontsize=8)
    ax.set_xlabel("rotation error (degrees)")
    ax.set_ylabel("objects")
    ax.set_title(title, fontsize=10)
    if len(errors_deg) > 1:
        ax.legend(fontsize=8)
    return _figure_png(fig)


def accuracy_bars(per_group: dict[str, dict[str, float]], title: str) -> str:
    """Acc@pi/6 and Acc@pi/18 bars per group (category or annotator)."""
    plt = _plt()
    names = list(per_group)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(names) + 2), 3.2))
    xs = range(len(names))
    for off, key, label in ((-0.2, "acc_pi6", "Acc@pi/6"), (0.2, "acc_pi18", "Acc@pi/18")):
        vals = [0.0 if math.isnan(per_group[n][key]) else per_group[n][key] for n in names]
        ax.bar([x + off for x in xs], vals, width=0.4, label=label,
               color=COLOURS["pi6" if key == "acc_pi6" else "pi18"])
    ax.set_xticks(list(xs), names, rotation=30 if len(names) > 6 else 0, ha="right"
                  if len(names) > 6 else "center", fontsize=8)
    ax.set_ylim(0, 1.22)  # headroom: the legend sits above bars that reach 1
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="upper center")
    return _figure_png(fig)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return '<span class="ok">yes</span>' if value else '<span class="no">no</span>'
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """An HTML table of ``rows`` with (key, header) columns; cells escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k, _ in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


METRIC_COLUMNS = [("count", "n"), ("acc_pi6", "Acc@pi/6"), ("acc_pi18", "Acc@pi/18"),
                  ("median_deg", "median (deg)")]


def _metric_rows(per: dict[str, dict[str, float]], name: str) -> list[dict[str, Any]]:
    return [{name: k, **v} for k, v in per.items()]


QUALIFICATION_COLUMNS = [
    ("annotator", "annotator"), ("passed", "passed"), ("objects", "objects scored"),
    ("median_deg", "median rotation error (deg)"), ("acc_pi6", "Acc@pi/6"),
    ("acc_pi18", "Acc@pi/18"), ("centre_median_px", "median centre error (px)"),
    ("cad_agreement", "CAD agrees"), ("quality_agreement", "quality agrees"), ("reason", "why")]


def qualification_section(rows: list[dict[str, Any]]) -> list[str]:
    """The qualification test's results (ls_admin.qualify.result_rows): a row per annotator."""
    passed = sum(bool(r["passed"]) for r in rows)
    return ["<h2>Qualification test</h2>",
            f"<p class=note>pose6d-qualify: each annotator's newest answers on the qualification "
            f"project scored against its reference poses; {passed} of {len(rows)} passed.</p>",
            table([{**r, "passed": bool(r["passed"]), **{k: math.nan for k, _ in
                                                         QUALIFICATION_COLUMNS if r.get(k) is None}}
                   for r in rows], QUALIFICATION_COLUMNS)]


EVALUATION_COLUMNS = [("group", "category"), ("ratings", "ratings"), ("b_wins", "B better"),
                      ("a_wins", "A better"), ("ties", "same"), ("b_win_rate", "B win rate"),
                      ("low", "95% CI low"), ("high", "95% CI high")]


def evaluation_section(evaluations: list[dict[str, Any]]) -> list[str]:
    """pose6d-evaluate's blind A/B results (ls_admin.evaluate_results.results), each evaluation:
    B's win rate per category with its Wilson interval, and the objects where A won."""
    parts = ["<h2>Blind A/B evaluation</h2>"]
    for e in evaluations:
        parts += [f"<p class=note><b>{html.escape(e['evaluation'])}</b>: A = {html.escape(e['a'])}, "
                  f"B = {html.escape(e['b'])}; {e['rated_pairs']} of {e['pairs']} pairs rated. "
                  "B win rate: B rated better among the ratings that chose a side (ties apart), "
                  "95% Wilson score interval.</p>",
                  table([{"group": "all", **e["overall"]}] + [
                      {"group": c, **t} for c, t in e["per_category"].items()], EVALUATION_COLUMNS),
                  f"<p class=note>Objects where A won ({len(e['a_won'])}): worth a review.</p>"]
        if e["a_won"]:
            parts.append(table(e["a_won"], [("object", "object"), ("a_wins", "A better"),
                                            ("b_wins", "B better"), ("ties", "same")]))
    return parts


def review_section(review: dict[str, Any]) -> list[str]:
    """pose6d-review's decisions (ls_admin.report.review_summary): counts, reasons, reviewers."""
    waiting = review["rejected"] - review["sent_back"]
    reasons = ", ".join(f"{html.escape(k)} {v}" for k, v in sorted(review["reasons"].items()))
    return ["<h2>Review</h2>",
            f"<p class=note>pose6d-review: {review['reviews']} decisions, {review['accepted']} "
            f"accepted, {review['rejected']} rejected: {review['sent_back']} sent back to the "
            f"annotators, {waiting} waiting for <code>pose6d-review sync</code>. Reasons: "
            f"{reasons or 'none'}.</p>",
            table(review["reviewers"], [("reviewer", "reviewer"), ("accepted", "accepted"),
                                        ("rejected", "rejected")])]


def evaluation_page(evaluations: list[dict[str, Any]]) -> str:
    """pose6d-evaluate results --html: the section alone as a page."""
    return ("<!doctype html><html><head><meta charset=utf-8><title>pose6d evaluation</title>"
            f"<style>{CSS}</style></head><body>{''.join(evaluation_section(evaluations))}"
            "</body></html>")


def render_html(report: dict[str, Any]) -> str:
    """The whole page as a string."""
    p, m, a, g = (report[k] for k in ("progress", "model", "agreement", "ground_truth"))
    share = p["done"] / p["total"] if p["total"] else math.nan
    o = m["overall"]
    parts = [f"<h1>pose6d labelling report</h1><p class=note>source: {html.escape(report['source'])}</p>",
             "<div>" + "".join(f'<span class="kpi"><b>{v}</b>{html.escape(k)}</span>' for k, v in (
                 ("objects done", f"{p['done']} / {p['total']}"),
                 ("done", "-" if math.isnan(share) else f"{100 * share:.1f}%"),
                 ("skipped", p["skipped"]), ("bad / no object", p["bad"]),
                 ("model Acc@pi/6", _fmt(o["acc_pi6"])),
                 ("model median error", "-" if math.isnan(o["median_deg"]) else f"{o['median_deg']:.1f} deg"))) + "</div>",
             "<h2>Progress per category</h2>",
             table(p["categories"], [("category", "category"), ("done", "done"),
                                     ("skipped", "skipped"), ("bad", "bad / no object"),
                                     ("total", "objects")])]
    if p["categories"]:
        parts.append(progress_plot(p["categories"]))
    parts += ["<h2>Progress per annotator</h2>",
              table(p["annotators"], [("annotator", "annotator"), ("done", "objects done"),
                                      ("skipped", "skipped"), ("bad", "bad / no object"),
                                      ("total", "of objects")])]
    parts += ["<h2>Pretrained model against the final labels</h2>",
              f"<p class=note>Initial pose (annotations/) vs the newest completed label of each "
              f"object with an object in it. CAD model right: {_fmt(m['cad_accuracy'])}.</p>",
              table([{"group": "all", **o}] + _metric_rows(m["per_category"], "group"),
                    [("group", "category")] + METRIC_COLUMNS)]
    if m["errors_deg"]:
        parts.append(histogram({"model": m["errors_deg"]}, "pretrained model: rotation error"))
        parts.append(accuracy_bars(m["per_category"], "pretrained model: accuracy per category"))
    parts.append("<h2>Agreement between annotators</h2>")
    if a is None:
        parts.append("<p class=note>Not available: one label per object (no sync store). Run "
                     "with --project-id, or keep the backend's sync store.</p>")
    else:
        parts += [f"<p class=note>{a['objects']} objects labeled by two or more annotators; "
                  "rotation error between each pair's poses.</p>",
                  table([{"group": "all", **a["overall"]}] + _metric_rows(a["pairs"], "group"),
                        [("group", "annotator pair")] + METRIC_COLUMNS)]
        if a["errors_deg"]:
            parts.append(histogram({"pairs": a["errors_deg"]}, "agreement: rotation error"))
    parts.append("<h2>Annotators against ground truth</h2>")
    if g is None:
        parts.append("<p class=note>This dataset has no ground_truth/ records.</p>")
    else:
        parts += [f"<p class=note>{g['objects']} ground-truth objects. On target: Acc@pi/6 &ge; "
                  f"{g['qualify_acc']:.0%} on at least {g['qualify_min']} objects (a spot check "
                  "of the labels; the qualification test is pose6d-qualify's section).</p>",
                  table(g["annotators"], [("annotator", "annotator")] + METRIC_COLUMNS + [
                      ("quality_agreement", "quality agrees"), ("on_target", "on target")])]
        if g["annotators"]:
            per = {r["annotator"]: r for r in g["annotators"]}
            parts.append(accuracy_bars(per, "annotators against ground truth"))
        if any(g["errors_deg"].values()):
            parts.append(histogram(g["errors_deg"], "annotators against ground truth: rotation error"))
    if report.get("qualification"):
        parts += qualification_section(report["qualification"])
    if report.get("evaluation"):
        parts += evaluation_section(report["evaluation"])
    if report.get("review"):
        parts += review_section(report["review"])
    unseen = report.get("unseen") or []
    parts.append("<h2>Poses submitted without being drawn</h2>")
    if unseen:
        parts += ["<p class=note>The overlay the annotator saw showed another pose or CAD model "
                  "than the one submitted: worth a second look.</p>",
                  table(unseen, [("object", "object"), ("annotator", "annotator"),
                                 ("annotation", "annotation")])]
    else:
        parts.append("<p class=note>None: every submitted pose had been drawn.</p>")
    return ("<!doctype html><html><head><meta charset=utf-8><title>pose6d report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
