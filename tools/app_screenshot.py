"""Screenshot of `marionette app` for the README (docs/app.png): a headless Chromium uploads the
bundled portrait and clip, runs a job and shows the result at 1.2 s. Needs the app and dev extras
and Debian's chromium.

    .venv/bin/python tools/app_screenshot.py            # about 20 s on 2 cores
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from marionette.app import AppConfig, WebApp

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "app.png"))
    parser.add_argument("--port", type=int, default=7861)
    args = parser.parse_args()
    app = WebApp(AppConfig(port=args.port))
    app.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(app.url)
            page.locator("#targets input[type=file]").set_input_files([str(REPO / "assets/faces/02_grace_hopper.jpg")])
            page.locator("#landmarks img").first.wait_for(timeout=30_000)
            page.locator("#driver input[type=file]").set_input_files(str(REPO / "assets/videos/grid_lbax4n.mp4"))
            page.locator("#max_frames input").fill("50")
            page.locator("#run").click()
            page.locator("#result video").wait_for(timeout=60_000)
            page.wait_for_function("document.querySelector('#result video').readyState >= 2", timeout=20_000)
            page.evaluate("""() => new Promise(done => { const v = document.querySelector('#result video');
                             v.addEventListener('seeked', done, {once: true}); v.currentTime = 1.2; })""")
            png = page.screenshot(full_page=True)
            browser.close()
    finally:
        app.close()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
