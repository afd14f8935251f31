"""pose6d-evaluate (issue 20, part 2): the blind A/B evaluation.

Offline: the Wilson score interval against textbook values, annotations -> ratings, the store's
upsert / delete (replays, tombstones), the results against counts made here by hand.
Live (the session's real Label Studio): create from a demo dataset with synced records, the
task data and image URLs reveal no key, the pictures show the poses the key says, ratings made
through the API are pulled and counted as this test counts them, re-running adds nothing,
a re-created project keeps the ratings and asks only the unrated pairs.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from label_sync import evaluation as E
from label_sync.quality_store import EVALUATION, Pair, QualityStore, Rating
from label_sync.records import SyncRejected
from ls_admin.evaluate_results import results, wilson_interval

REPO = Path(__file__).resolve().parents[1]


# --- Offline. ---


@pytest.mark.parametrize("wins, n, low, high", [
    # Newcombe (1998), Statistics in Medicine 17:857-872, table I, method 3 (score, no
    # continuity correction), to the 4 decimals printed there.
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    # By hand: p = 0.5, z^2 = 3.8415: centre 0.5, half 1.9600 / 1.38415 * sqrt(0.025 + 0.0096)
    (5, 10, 0.2366, 0.7634),
    # By hand: p = 5/7: centre (0.71429 + 0.27439) / 1.54878 = 0.63836, half 1.26549 *
    # sqrt(0.029155 + 0.019599) = 0.27943
    (5, 7, 0.3589, 0.9178),
])
def test_wilson_interval_matches_textbook_values(wins, n, low, high):
    got = wilson_interval(wins, n)
    assert got == pytest.approx((low, high), abs=6e-5)


def test_wilson_interval_edges():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    low, high = wilson_interval(20, 20)  # all wins: the interval is not empty, ends at 1
    assert high == pytest.approx(1.0) and low == pytest.approx(0.8389, abs=6e-5)  # 1 - 0.1611


def verdict(value: str) -> list[dict]:
    return [{"from_name": E.VERDICT, "to_name": E.IMAGE_LEFT, "type": "choices",
             "value": {"choices": [E.CHOICES[value]]}}]


def annotation(ann_id: int, value: str | None, updated: str = "2026-12-06T10:00:00Z",
               cancelled: bool = False, user: int = 1) -> dict:
    return {"id": ann_id, "result": verdict(value) if value else [], "was_cancelled": cancelled,
            "completed_by": user, "updated_at": updated}


def test_rating_from_annotation():
    task = {"id": 7, "data": {E.DATA_PAIR: "ab" * 16, E.DATA_LEFT: "x", E.DATA_RIGHT: "y"}}
    rating = E.rating_from_annotation(annotation(3, E.RIGHT), task, 5)
    stamp = dt.datetime(2026, 12, 6, 10, tzinfo=dt.timezone.utc).timestamp()
    assert rating == Rating(3, "ab" * 16, "1", E.RIGHT, int(stamp) * 10**6, 5, 7)
    assert E.rating_from_annotation(annotation(4, None, cancelled=True), task, 5) is None
    with pytest.raises(SyncRejected, match="no verdict"):
        E.rating_from_annotation(annotation(4, None), task, 5)
    with pytest.raises(SyncRejected, match="pair id"):
        E.rating_from_annotation(annotation(4, E.LEFT), {"id": 7, "data": {}}, 5)
    bad = annotation(4, E.LEFT)
    bad["result"][0]["value"]["choices"] = ["Left is nicer"]
    with pytest.raises(SyncRejected, match="must be one of"):
        E.rating_from_annotation(bad, task, 5)


def test_labeling_config_is_what_label_studio_reads():
    from label_studio_sdk.label_interface import LabelInterface

    li = LabelInterface(E.labeling_config())
    control = li.get_control(E.VERDICT)
    assert [o.name for o in control.objects] == [E.IMAGE_LEFT]  # one target (FIELD_NOTES §10)
    assert control.labels == [E.CHOICES[v] for v in (E.LEFT, E.SAME, E.RIGHT)]
    assert {o.name: o.value for o in li.objects} == {E.IMAGE_LEFT: "$" + E.DATA_LEFT,
                                                      E.IMAGE_RIGHT: "$" + E.DATA_RIGHT}


def pair(pair_id: str, key: str, b_left: bool) -> Pair:
    pose = {"azimuth": 0.0}
    return Pair(pair_id, "ev", key, "synced" if b_left else "initial",
                "initial" if b_left else "synced", pose, pose, f"l{pair_id}", f"r{pair_id}")


def test_store_upsert_is_newest_wins_and_replay_safe(tmp_path):
    store = QualityStore(str(tmp_path / "s.sqlite3"))
    with store.transaction() as tx:
        first = tx.add_pair(pair("p1", "car/a_0", True))
        again = tx.add_pair(pair("p2", "car/a_0", False))  # same object: the first pair stays
        assert again == first and tx.pair("p2") is None
        old = Rating(1, "p1", "u", E.LEFT, 100)
        new = Rating(1, "p1", "u", E.RIGHT, 200)
        assert tx.upsert_rating(old) and tx.upsert_rating(new)
        assert not tx.upsert_rating(old) and not tx.upsert_rating(new)  # replays
        assert [r.choice for r in tx.ratings("ev")] == [E.RIGHT]
        assert tx.delete_rating(1) and not tx.delete_rating(1)
        assert not tx.upsert_rating(Rating(1, "p1", "u", E.LEFT, 300))  # no resurrection
        assert tx.ratings("ev") == []
        assert not tx.delete_rating(9)  # a deletion seen before its creation...
        assert not tx.upsert_rating(Rating(9, "p1", "u", E.LEFT, 100))  # ...wins
    store.close()


def test_results_count_as_by_hand():
    pairs = [pair("p1", "car/a_0", True), pair("p2", "car/b_0", False),
             pair("p3", "mug/c_0", True)]
    ratings = [Rating(1, "p1", "u1", E.LEFT, 10),  # B (left) wins
               Rating(2, "p1", "u2", E.RIGHT, 10),  # A wins
               Rating(3, "p1", "u2", E.LEFT, 20),  # u2's newer rating of p1: B wins
               Rating(4, "p2", "u1", E.LEFT, 10),  # A (left) wins
               Rating(5, "p3", "u1", E.SAME, 10),  # tie
               Rating(6, "p3", "u2", E.RIGHT, 10)]  # A wins
    got = results("ev", "initial", "synced", pairs, ratings)
    # By hand, one rating per rater and pair: car: B 2, A 1; mug: A 1, tie 1.
    car = got["per_category"]["car"]
    assert (car["ratings"], car["b_wins"], car["a_wins"], car["ties"]) == (3, 2, 1, 0)
    assert got["per_category"]["mug"]["a_wins"] == 1 and got["per_category"]["mug"]["ties"] == 1
    overall = got["overall"]
    assert (overall["b_wins"], overall["a_wins"], overall["ties"]) == (2, 2, 1)
    assert overall["b_win_rate"] == 0.5
    assert (overall["low"], overall["high"]) == pytest.approx((0.1500, 0.8500), abs=1e-4)
    assert [o["object"] for o in got["a_won"]] == ["car/b_0", "mug/c_0"]
    assert got["rated_pairs"] == 3 and got["pairs"] == 3


def test_a_predictions_file_is_a_source(tmp_path):
    """file:PATH reads the backend's predictions format; objects not in it are not compared."""
    from ls_admin.evaluate import PoseSource
    from pose6d.dataset import Dataset
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path / "demo"
    make_demo_dataset(root, objects=3, seed=1, progress=False)
    dataset = Dataset(root)
    key = dataset.objects()[0]
    initial = dataset.read(key)
    path = tmp_path / "preds.jsonl"
    path.write_text('{"object_key": "%s", "azimuth": 12.5, "elevation": 3, "theta": -4, '
                    '"distance": 6, "px": 100, "py": 90}\n{"object_key": "car/x_0", "error": "no"}\n'
                    % key)
    source = PoseSource.parse(f"file:{path}")
    assert source.keys(dataset, None) == {key}
    assert source.pose(dataset, key) == pytest.approx({
        "azimuth": 12.5, "elevation": 3.0, "theta": -4.0, "distance": 6.0, "px": 100.0,
        "py": 90.0, "viewport": initial.pose.viewport, "cad_index": initial.cad_index})


# --- Live: the session's Label Studio. ---

SYNCED_KEYS = 8
EDGE = (255, 230, 0)  # the overlay's edge colour, written here, not imported


def run(label_studio, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LABEL_STUDIO_URL=label_studio.url,
               LABEL_STUDIO_API_KEY=label_studio.token)
    done = subprocess.run([sys.executable, str(REPO / "scripts/evaluate.py"), *args, "--quiet"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def demo(label_studio_root, tmp_path_factory):
    """A demo dataset with the ground truth of some objects written as synced human labels."""
    from pose6d.dataset import GROUND_TRUTH, SYNCED, Dataset
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("evaluate") / "demo"
    make_demo_dataset(root, objects=14, seed=4, progress=False)
    dataset = Dataset(root)
    keys = dataset.objects(GROUND_TRUTH)[:SYNCED_KEYS]
    for key in keys:
        dataset.write(key, dataset.read(key, GROUND_TRUTH), SYNCED)
    return dataset, keys


def find_crop(photo: np.ndarray, picture: np.ndarray) -> tuple[int, int]:
    """(x0, y0) where ``picture`` (a crop of the photo with yellow lines) sits in the photo."""
    h, w = picture.shape[:2]
    clean = [r for r in range(h) if not (picture[r] == EDGE).all(axis=1).any()]
    row = clean[len(clean) // 2]
    H, W = photo.shape[:2]
    for y in range(row, H - h + row + 1):
        hits = np.nonzero((photo[y, :W - w + 1] == picture[row, 0]).all(axis=1))[0]
        for x in hits:
            if (photo[y, x:x + w] == picture[row]).all() and \
                    (photo[y - row:y - row + h, x:x + w][~(picture == EDGE).all(axis=2)]
                     == picture[~(picture == EDGE).all(axis=2)]).all():
                return int(x), int(y - row)
    raise AssertionError("the picture is not a crop of the photo")


def check_picture(dataset, key, picture_path: Path, pose_values: dict) -> float:
    """Share of the picture's yellow pixels within 2 px of the reference rasteriser's
    silhouette of ``pose_values`` (an independent camera model)."""
    from checks import edges_agree_with_silhouette
    from pose6d.camera import Pose
    from pose6d.inout import read_image
    from reference_camera import reference_silhouette

    photo, picture = read_image(dataset.image_path(key)), read_image(picture_path)
    x0, y0 = find_crop(photo, picture)
    full = np.zeros(photo.shape[:2], bool)
    full[y0:y0 + picture.shape[0], x0:x0 + picture.shape[1]] = (picture == EDGE).all(axis=2)
    pose = Pose.from_degrees(**{n: pose_values[n] for n in ("azimuth", "elevation", "theta",
                                                             "distance", "px", "py")},
                             viewport=pose_values["viewport"])
    mesh = dataset.cad.mesh(key.category, int(pose_values["cad_index"]))
    silhouette = reference_silhouette(mesh.vertices, mesh.faces, pose, photo.shape[1],
                                      photo.shape[0])
    return edges_agree_with_silhouette(full, silhouette)[1]


@pytest.mark.live
def test_evaluation_round_trip(label_studio, demo):
    from pose6d.dataset import GROUND_TRUTH, INITIAL

    dataset, keys = demo
    client = label_studio.client()
    title = "eval round trip"
    out = run(label_studio, "create", "--data-root", str(dataset.root), "--title", title,
              "--seed", "3").stdout
    project_id = int(re.search(r"^project (\d+):", out, re.M).group(1))
    assert f"pairs: {SYNCED_KEYS} new, {SYNCED_KEYS} tasks imported" in out, out
    tasks = list(client.tasks.list(project=project_id, fields="all"))
    assert len(tasks) == SYNCED_KEYS

    # Blind: task data is the pair id and two URLs of one shape, random names only.
    rel = dataset.root.resolve().relative_to(label_studio.document_root).as_posix()
    url_re = re.compile(r"^/data/local-files/\?d=(.+)/qc_renders/([0-9a-f]{32})\.png$")
    names, store = set(), QualityStore(str(dataset.root / "annotations_new/.sync.sqlite3"))
    with store.transaction() as tx:
        assert tx.project(project_id).kind == EVALUATION
        by_id = {p.pair_id: p for p in tx.pairs(title)}
    sides = {"initial": 0, "synced": 0}
    for task in tasks:
        data = task.data
        assert set(data) == {E.DATA_PAIR, E.DATA_LEFT, E.DATA_RIGHT}
        assert re.fullmatch(r"[0-9a-f]{32}", data[E.DATA_PAIR])
        left, right = url_re.match(data[E.DATA_LEFT]), url_re.match(data[E.DATA_RIGHT])
        assert left and right and left.group(1) == right.group(1)
        assert left.group(1) == rel
        names |= {left.group(2), right.group(2)}
        text = repr(data).lower() + repr(getattr(task, "meta", None)).lower()
        p = by_id[data[E.DATA_PAIR]]
        for word in ("initial", "synced", "annotations", "ground", "model", "human",
                     p.object_key.lower(), p.object_key.split("/")[1].lower()):
            assert word not in text
        # The pictures show the poses the key says; B (synced) is the ground truth written.
        key = next(k for k in keys if str(k) == p.object_key)
        gt = dataset.read(key, GROUND_TRUTH).pose.as_degrees()
        init = dataset.read(key, INITIAL).pose.as_degrees()
        for side, values in (("left", p.left_pose), ("right", p.right_pose)):
            source = p.left_source if side == "left" else p.right_source
            truth = gt if source == "synced" else init
            assert {n: values[n] for n in truth} == pytest.approx(truth, abs=1e-9)
            path = dataset.root / (p.left_image if side == "left" else p.right_image)
            assert check_picture(dataset, key, path, values) > 0.9
        sides[p.left_source] += 1
    assert len(names) == 2 * SYNCED_KEYS
    assert sides["initial"] and sides["synced"]  # both sides used (seed 3: checked, not assumed)

    # Rate through the API: this test's own verdicts, counted here.
    plan = ["b", "b", "b", "b", "a", "a", "same"]  # 7 of the 8 pairs; one stays unrated
    expected = {"b": 0, "a": 0, "same": 0}
    per_category: dict[str, dict[str, int]] = {}
    a_won = set()
    ordered = sorted(tasks, key=lambda t: t.id)
    for task, want in zip(ordered, plan):
        p = by_id[task.data[E.DATA_PAIR]]
        b_side = E.LEFT if p.left_source == "synced" else E.RIGHT
        a_side = E.RIGHT if b_side == E.LEFT else E.LEFT
        choice = {"b": b_side, "a": a_side, "same": E.SAME}[want]
        client.annotations.create(id=task.id, result=verdict(choice))
        expected[want] += 1
        c = per_category.setdefault(p.object_key.split("/")[0], {"b": 0, "a": 0, "same": 0})
        c[want] += 1
        if want == "a":
            a_won.add(p.object_key)
    csv_path = dataset.root.parent / "eval.csv"
    out = run(label_studio, "results", "--data-root", str(dataset.root), "--title", title,
              "--csv", str(csv_path)).stdout
    assert f"{len(plan)} annotations pulled: {len(plan)} ratings stored" in out, out
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    overall = next(r for r in rows if r["kind"] == "overall")
    assert (int(overall["b_wins"]), int(overall["a_wins"]), int(overall["ties"])) == \
        (expected["b"], expected["a"], expected["same"])
    assert float(overall["b_win_rate"]) == pytest.approx(4 / 6, abs=1e-4)
    # Wilson for 4 of 6, by hand: centre (0.66667 + 0.32012) / 1.64024 = 0.60161, half
    # 1.19492 * sqrt(0.037037 + 0.026676) = 0.30164
    assert (float(overall["ci95_low"]), float(overall["ci95_high"])) == \
        pytest.approx((0.3000, 0.9032), abs=2e-4)
    for category, c in per_category.items():
        row = next(r for r in rows if r["kind"] == "category" and r["group"] == category)
        assert (int(row["b_wins"]), int(row["a_wins"]), int(row["ties"])) == \
            (c["b"], c["a"], c["same"])
    assert {r["group"] for r in rows if r["kind"] == "a_won"} == a_won

    # The real annotation as Label Studio gives it makes the same rating (the webhook's path).
    first = client.annotations.list(id=ordered[0].id)[0]
    task_dict = {"id": ordered[0].id, "data": ordered[0].data}
    rating = E.rating_from_annotation(first.model_dump(mode="json"), task_dict, project_id)
    assert rating.annotation_id == first.id and rating.pair_id == ordered[0].data[E.DATA_PAIR]

    # Re-running create adds nothing; results again stores nothing new.
    out = run(label_studio, "create", "--data-root", str(dataset.root), "--title", title).stdout
    assert f"pairs: 0 new, 0 tasks imported, {SYNCED_KEYS} already in the project" in out, out
    out = run(label_studio, "results", "--data-root", str(dataset.root), "--title", title).stdout
    assert "0 ratings stored, 7 unchanged" in out, out

    # A deleted annotation stops counting once pulled.
    client.annotations.delete(id=first.id)
    run(label_studio, "results", "--data-root", str(dataset.root), "--title", title,
        "--csv", str(csv_path))
    overall = next(r for r in csv.DictReader(io.StringIO(csv_path.read_text()))
                   if r["kind"] == "overall")
    assert int(overall["ratings"]) == len(plan) - 1

    # The project deleted and made again: the ratings stay, only unrated pairs are asked.
    client.projects.delete(id=project_id)
    out = run(label_studio, "create", "--data-root", str(dataset.root), "--title", title).stdout
    new_id = int(re.search(r"^project (\d+):", out, re.M).group(1))
    assert new_id != project_id
    assert f"pairs: 0 new, 2 tasks imported, 0 already in the project, {len(plan) - 1} rated" \
        in out, out
    new_tasks = list(client.tasks.list(project=new_id, fields="all"))
    assert {t.data[E.DATA_PAIR] for t in new_tasks} <= set(by_id)
    for t in new_tasks:  # same pair, same pictures
        p = by_id[t.data[E.DATA_PAIR]]
        assert t.data[E.DATA_LEFT].endswith(p.left_image)
    run(label_studio, "results", "--data-root", str(dataset.root), "--title", title,
        "--csv", str(csv_path))
    overall = next(r for r in csv.DictReader(io.StringIO(csv_path.read_text()))
                   if r["kind"] == "overall")
    assert int(overall["ratings"]) == len(plan) - 1
    out = run(label_studio, "create", "--data-root", str(dataset.root), "--title", title,
              "--re-ask").stdout
    assert f"{len(plan) - 1} tasks imported" in out, out
    store.close()


@pytest.mark.live
def test_limit_counts_the_pairs_already_made(label_studio, demo):
    dataset, _ = demo
    args = ("create", "--data-root", str(dataset.root), "--title", "eval limit", "--seed", "1")
    out = run(label_studio, *args, "--limit", "3").stdout
    assert "pairs: 3 new, 3 tasks imported, 0 already" in out, out
    out = run(label_studio, *args, "--limit", "5").stdout
    assert "pairs: 2 new, 2 tasks imported, 3 already" in out, out
    # Another evaluation with other sources under the same title is refused, one line.
    env = dict(os.environ, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token)
    done = subprocess.run([sys.executable, str(REPO / "scripts/evaluate.py"), *args, "--a",
                           "ground_truth", "--quiet"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "compares A=initial with B=synced" in done.stderr


@pytest.mark.live
def test_a_run_killed_before_the_import_loses_nothing(label_studio, demo, monkeypatch):
    """Killed after the pairs were drawn and stored, before their tasks were imported: the
    next run imports exactly those pairs, with the same pictures (nothing drawn again)."""
    import ls_admin.evaluate as ev

    dataset, keys = demo
    store_url = str(dataset.root / "annotations_new/.sync.sqlite3")
    options = ev.CreateOptions(dataset.root, store_url, title="eval killed", seed=2,
                               progress=False)
    client = label_studio.client()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill between storing and importing would leave it

    monkeypatch.setattr(ev, "import_batches", killed)
    with pytest.raises(KeyboardInterrupt):
        ev.create(client, options, label_studio.url)
    monkeypatch.undo()
    store = QualityStore(store_url)
    with store.transaction() as tx:
        stored = {p.pair_id: p for p in tx.pairs("eval killed")}
    assert len(stored) == SYNCED_KEYS and all(p.task_id is None for p in stored.values())
    pictures = {p.left_image: (dataset.root / p.left_image).stat().st_mtime_ns
                for p in stored.values()}
    report = ev.create(client, options, label_studio.url)
    assert (report.made, report.imported) == (0, SYNCED_KEYS)
    tasks = list(client.tasks.list(project=report.project_id, fields="all"))
    assert {t.data[E.DATA_PAIR] for t in tasks} == set(stored)
    with store.transaction() as tx:
        assert {p.pair_id: p.task_id for p in tx.pairs("eval killed")} == {
            t.data[E.DATA_PAIR]: t.id for t in tasks}
    store.close()
    assert {name: (dataset.root / name).stat().st_mtime_ns for name in pictures} == pictures


def evaluation_service(dataset, project_id: int, pair_id: str):
    """A SyncService whose store knows evaluation project ``project_id`` and one pair, and a
    maker of that project's annotation events (ls_payloads' shapes, the pair in the task)."""
    import ls_payloads as ls
    from label_sync.engine import SyncService
    from label_sync.store import default_store_url

    store = QualityStore(default_store_url(dataset.root))
    with store.transaction() as tx:
        tx.register_project(project_id, EVALUATION, "ev", None, {"evaluation": "ev",
                                                                  "a": "initial", "b": "synced"})
        tx.add_pair(pair(pair_id, "car/img_a_1_0", True))

    def event(action, ann_id, updated, value, cancelled=False):
        e = ls.annotation_event(action, ann_id, 5, "car/img_a_1_0", updated,
                                verdict(value) if value else [], project_id=project_id,
                                was_cancelled=cancelled)
        e["project"]["id"] = project_id
        e["task"]["project"] = project_id
        e["task"]["data"] = {E.DATA_PAIR: pair_id, E.DATA_LEFT: "/x.png", E.DATA_RIGHT: "/y.png"}
        return e

    return SyncService(dataset), store, event


def test_the_engine_keeps_the_reason_of_a_refused_rating(tiny_dataset):
    service, store, event = evaluation_service(tiny_dataset, 61, "ef" * 16)
    with pytest.raises(SyncRejected, match="no verdict"):
        service.handle_event(event("ANNOTATION_CREATED", 41, 10, None))
    journaled = service.journal(1)[0]
    assert journaled["status"] == "rejected" and "no verdict" in journaled["reason"]
    service.close()
    store.close()


def test_ratings_arrive_through_the_sync_engine(tiny_dataset):
    """The webhook's path: an evaluation project's annotation events become ratings (newest
    version wins, replays and deletions as the store says), never dataset records."""
    import ls_payloads as ls

    project_id = 60
    service, store, event = evaluation_service(tiny_dataset, project_id, "cd" * 16)

    def choices():
        with store.transaction() as tx:
            return [(r.annotation_id, r.choice) for r in tx.ratings("ev")]

    assert service.handle_event(event("ANNOTATION_CREATED", 31, 10, E.LEFT))["status"] == "applied"
    assert service.handle_event(event("ANNOTATION_CREATED", 31, 10, E.LEFT))["status"] != "applied"
    assert service.handle_event(event("ANNOTATION_UPDATED", 31, 20, E.SAME))["status"] == "applied"
    assert service.handle_event(event("ANNOTATION_UPDATED", 31, 15, E.RIGHT))["status"] != "applied"
    assert choices() == [(31, E.SAME)]
    assert service.handle_event(event("ANNOTATION_CREATED", 32, 10, None, cancelled=True)
                                )["status"] == "ignored"
    with pytest.raises(SyncRejected):  # the webhook answers 422; nothing stored
        service.handle_event(event("ANNOTATION_CREATED", 33, 10, None))
    deletion = ls.deleted(31)
    deletion["project"]["id"] = project_id
    service.handle_event(deletion)
    service.handle_event(event("ANNOTATION_UPDATED", 31, 30, E.LEFT))  # a late, replayed update
    assert choices() == []
    assert not (tiny_dataset.root / "annotations_new" / "car").exists()
    service.close()
    store.close()
