#!/usr/bin/env python3
"""Screenshots for README "Annotating" (docs/images/annotating_*.png), taken in a real Label
Studio with the real backend on the demo dataset, in headless Chromium at 1366x768.

    LABEL_STUDIO_BIN=... python tests/make_screenshots.py [--out docs/images]

It starts its own Label Studio and backend (temporary folders) and stops them at the end.
The commands typed here were chosen by looking at the ground truth: this is a demonstration,
not a measurement (benchmarks/bench_interactive.py measures).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from label_studio_server import chromium_launch_kwargs, login  # noqa: E402
from ls_admin.server import LabelStudioServer  # noqa: E402
from ls_admin.backend_process import BackendProcess  # noqa: E402
from pose6d.dataset import GROUND_TRUTH, Dataset, ObjectKey  # noqa: E402
from pose6d.demo.dataset import make_demo_dataset  # noqa: E402
from ls_admin.project import SetupOptions, setup_project  # noqa: E402

CAR, CHAIR = "car/demo_car_0005_0", "chair/demo_chair_0002_0"


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError("timed out")


class Page:
    def __init__(self, page, out: Path):
        self.page, self.out = page, out

    def settle(self, ms: int = 1200) -> None:
        self.page.wait_for_timeout(ms)

    def shot(self, name: str) -> None:
        from PIL import Image

        path = self.out / f"annotating_{name}.png"
        self.page.screenshot(path=str(path))
        # 256 colours: a quarter of the size, no visible loss on a UI screenshot
        Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
        print("wrote", path)

    def command(self, text: str) -> None:
        box = self.page.get_by_test_id("textarea-input")
        box.click()
        box.type(text)
        self.page.keyboard.press("Enter")
        self.settle()

    def photo_xy(self, x: float, y: float, width: int) -> tuple[float, float]:
        box = self.page.evaluate("""w => { const r = [...document.images].filter(i =>
            i.naturalWidth === w).map(i => i.getBoundingClientRect()).sort((a, b) =>
            b.width - a.width)[0]; return {x: r.x, y: r.y, s: r.width / w}; }""", width)
        return box["x"] + (x + 0.5) * box["s"], box["y"] + (y + 0.5) * box["s"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="pose6d-shots-") as tmp:
        tmp = Path(tmp)
        root = tmp / "demo"
        make_demo_dataset(root, objects=8, seed=0, progress=False)
        dataset = Dataset(root)
        server = LabelStudioServer(tmp, data_dir=tmp / "ls").start()
        backend = BackendProcess(root, log_path=tmp / "backend.log").start()
        try:
            client = server.client()
            keys = [ObjectKey.parse(CAR), ObjectKey.parse(CHAIR)]
            # The admin's own setup: CAD pictures, tasks, the backend and its webhook.
            report = setup_project(client, SetupOptions(root, backend.url, title="pose6d demo",
                                                        keys=keys, progress=False), server.url)
            project = client.projects.get(id=report.project_id)
            ids = {t.data["object_key"]: t.id for t in client.tasks.list(project=project.id)}
            car_truth = dataset.read(keys[0], GROUND_TRUTH)
            car_box = dataset.read(keys[0]).bbox
            with sync_playwright() as pw:
                browser = pw.chromium.launch(**chromium_launch_kwargs())
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                login(page, server)
                page.goto(f"{server.url}/projects/{project.id}/data?labeling=1")  # Label All Tasks
                page.wait_for_selector("input[type=range][name=azimuth]", timeout=90000)
                me = Page(page, args.out)
                me.settle(2500)
                page.get_by_test_id("bottombar-auto-annotation-toggle").check(force=True)
                page.get_by_test_id("bottombar-auto-accept-toggle").check(force=True)
                me.settle()
                me.shot("1_opened")  # the model's pose and CAD model 1 (wrong: it is a pickup)
                me.command("n")
                me.shot("2_next_model")
                a = me.photo_xy(car_box[0], car_box[1], 640)
                b = me.photo_xy(car_box[2] - 1, car_box[3] - 1, 640)
                # the box being drawn (Ctrl held: the drag starts on the overlay)
                page.get_by_text("Object quality", exact=True).click()
                page.keyboard.press("r")
                page.keyboard.down("Control")
                page.mouse.move(*a)
                page.mouse.down()
                page.mouse.move(*b, steps=10)
                me.shot("3_drawing_a_box")
                page.mouse.up()
                page.keyboard.up("Control")
                me.settle()
                me.shot("4_box_fitted")
                truth = car_truth.pose.as_degrees()
                me.command(f"a={truth['azimuth']:.0f} e={truth['elevation']:.0f} "
                           f"t={truth['theta']:.0f}")
                me.command("?")
                me.shot("5_commands_and_help")
                me.command("o")  # the next overlay style: a faint fill
                me.shot("6_overlay_tint")
                me.command("o=edges q1 dn")  # back to edges; quality and dense from the box
                me.shot("7_ready_to_submit")
                page.goto(f"{server.url}/projects/{project.id}/data?task={ids[CHAIR]}")
                page.wait_for_selector("input[type=range][name=azimuth]", timeout=90000)
                me.settle(2500)
                me.shot("8_facing_the_wrong_way")
                me.command("f")
                me.shot("9_flipped")
                browser.close()
        finally:
            backend.stop()
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
