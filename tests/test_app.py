"""The web app (`marionette app`): a real headless Chromium drives the page; 20 concurrent API
requests meet the queue; no file outlives the app."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import pytest
from helpers import missing, require

from marionette.media import iter_video
from marionette.provenance import verify

gradio = require("gradio", 'the app needs Gradio: pip install "marionette[app]"')

from marionette.app import RESULT_NAME, AppConfig, WebApp  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "assets"  # bundled copies of the shared faces and clips
TARGET = ASSETS / "faces" / "02_grace_hopper.jpg"
DRIVER = ASSETS / "videos" / "grid_lbax4n.mp4"  # 75 frames, 3 s
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def app(tmp_path: Path):
    """The app on a free loopback port, with a 1 MB upload cap and a queue of 4."""
    app = WebApp(AppConfig(port=_free_port(), max_upload_mb=1.0, queue_size=4, concurrency=1,
                           temp_dir=str(tmp_path / "app")))
    app.start()
    yield app
    app.close()


def test_defaults_bind_loopback_only() -> None:
    assert AppConfig().host == "127.0.0.1"


@pytest.mark.parametrize("kind,offered", [("none", "neural"), ("file", "neural"), ("folder", "onnx")])
def test_the_generator_is_offered_and_the_default(tmp_path: Path, kind: str, offered: str) -> None:
    checkpoint = tmp_path / "generator"  # none (the shipped generator), an export (a file) or its ONNX export (a folder)
    checkpoint.mkdir() if kind == "folder" else checkpoint.write_bytes(b"")
    app = WebApp(AppConfig(checkpoint=str(checkpoint) if kind != "none" else "", temp_dir=str(tmp_path / "app")))
    try:
        assert app.renderers == ["warp", offered]
    finally:
        app.close()


def test_command_line_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from marionette.cli import main

    assert main(["app", "--set", "max_upload=5"]) == 2
    assert capsys.readouterr().err.startswith("marionette: error: max_upload=5: unknown AppConfig setting")
    monkeypatch.setitem(sys.modules, "gradio", None)  # Gradio not installed
    assert main(["app"]) == 2
    assert capsys.readouterr().err == 'marionette: error: the app needs Gradio: pip install "marionette[app]"\n'


@pytest.fixture
def playwright():
    """Playwright's sync API, driving the system's Chromium (it never downloads a browser)."""
    module = require("playwright.sync_api", "the browser tests need playwright (pip install playwright)")
    if CHROMIUM is None:
        missing("the browser tests need Chromium (Debian: apt-get install chromium); none on PATH")
    with module.sync_playwright() as p:
        yield p


def _result(page) -> tuple[int, float, str]:
    """Wait for the result video to be playable; (its width, its duration, the verify verdict)."""
    page.locator("#result video").wait_for(timeout=60_000)
    page.wait_for_function("document.querySelector('#result video').readyState >= 2", timeout=20_000)
    width, duration = page.evaluate("[document.querySelector('#result video').videoWidth, "
                                    "document.querySelector('#result video').duration]")
    return width, duration, page.locator("#verdict textarea").input_value()


@pytest.mark.browser
def test_browser_upload_run_play_and_refuse_an_oversize_upload(app: WebApp, playwright, tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(TARGET.read_bytes() + bytes(1_200_000))  # a valid JPEG start, over the 1 MB cap
    browser = playwright.chromium.launch(executable_path=CHROMIUM)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app.url)
        page.locator("#targets input[type=file]").set_input_files([str(TARGET)])
        page.locator("#landmarks img").first.wait_for(timeout=30_000)  # the preview, on upload
        page.locator("#driver input[type=file]").set_input_files(str(DRIVER))
        page.locator("#max_frames input").fill("8")
        page.locator("#run").click()
        width, duration, verdict = _result(page)
        assert width == 512 and 0.25 < duration < 0.4  # the photo's width; 8 frames at 25 frames/s
        assert "synthetic, made by marionette" in verdict and "watermark: present" in verdict
        served = tmp_path / RESULT_NAME  # what the page plays, as a browser downloads it
        urllib.request.urlretrieve(page.locator("#result video").get_attribute("src"), served)
        report = verify(served)
        assert report.tag is not None and report.watermark.present and report.watermark.frames == 8

        page.locator("#targets button[aria-label='Clear']").first.click()
        page.locator("#targets input[type=file]").set_input_files([str(big)])
        page.get_by_text(re.compile(r'exceed the maximum allowed size of 1(\.0)? Mb: "big\.jpg"')).wait_for(timeout=10_000)
    finally:
        browser.close()
    assert not [p for p in _files(Path(app.temp_dir)) if p.name == big.name]  # refused before it reached the server


@pytest.mark.browser
def test_browser_webcam_recording_drives_the_target(app: WebApp, playwright, tmp_path: Path) -> None:
    """Chromium's fake camera plays the bundled clip; the page records 2.5 s of it as the driver."""
    feed = tmp_path / "camera.y4m"
    with av.open(str(feed), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 360, 288, "yuv420p"
        for frame in iter_video(DRIVER):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={feed}"])
    try:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera", "microphone"]).new_page()
        page.goto(app.url)
        page.locator("#targets input[type=file]").set_input_files([str(TARGET)])
        page.locator("#driver button[aria-label='Capture from camera']").click()
        page.get_by_text("Click to Access Webcam").click()
        record = page.locator("#driver button[aria-label='start recording']")
        record.click()
        page.wait_for_timeout(2500)
        record.click()  # stop
        page.locator("#driver video").first.wait_for(timeout=20_000)
        page.locator("#run").click()
        width, duration, verdict = _result(page)
    finally:
        browser.close()
    frames = int(re.search(r"\n(\d+) frames, renderer neural", verdict).group(1))
    assert width == 512 and frames >= 25 and "synthetic, made by marionette" in verdict and "watermark: present" in verdict


def test_api_twenty_concurrent_requests_complete_or_are_refused_and_leave_no_file(app: WebApp, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False, download_files=str(tmp_path / "client"))

    def request(_: int) -> tuple[str, str]:
        job = client.submit([handle_file(str(TARGET))], handle_file(str(DRIVER)), 0, "relative", 1.0, "warp",
                            "crop", False, 3, api_name="/reenact")
        try:
            video, verdict = job.result(timeout=90)
        except Exception as e:  # noqa: BLE001 (the test sorts every outcome below)
            return "refused", str(e)
        return "done", verdict

    start = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(request, range(20)))
    seconds = time.perf_counter() - start
    done = [text for kind, text in outcomes if kind == "done"]
    refused = [text for kind, text in outcomes if kind == "refused"]
    assert seconds < 60 and len(done) + len(refused) == 20 and done
    assert all("synthetic, made by marionette" in v and "watermark: present" in v and "3 frames" in v for v in done)
    assert all("queue is full" in text.lower() for text in refused), refused[:3]
    jobs = sorted(Path(app.temp_dir).glob("job-*"))  # one folder per job that ran, holding its result only
    assert len(jobs) == len(done) and all([p.name for p in job.iterdir()] == [RESULT_NAME] for job in jobs)
    assert not list(Path(app.temp_dir).glob("preview-*"))
    print(f"{len(done)} done, {len(refused)} refused by the queue in {seconds:.1f} s")
    app.close()
    assert list((tmp_path / "app").iterdir()) == []  # uploads and results go when the app stops


def test_progress_counts_frames_done_of_the_total_and_time_left(app: WebApp) -> None:
    calls: list[tuple[tuple[int, int], str]] = []
    video, verdict = app.reenact([str(TARGET)], str(DRIVER), 0, "relative", 1.0, "warp", "crop", False, 5,
                                 progress=lambda value, desc, unit: calls.append((value, desc)))
    assert [value for value, _ in calls] == [(i, 5) for i in range(1, 6)]  # max_frames caps the driver's 75
    assert calls[0][1].startswith("1/5 frames, about ") and calls[-1][1] == "5/5 frames, about 0 s left"
    assert Path(video).parent.parent == app.temp_dir and verdict.endswith("\n5 frames, renderer warp")


def test_over_long_driver_and_too_many_targets_are_refused_with_one_message(
        app: WebApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio_client import Client, handle_file

    monkeypatch.setattr(app, "config", AppConfig(max_seconds=2.0, max_targets=2))
    client = Client(app.url, verbose=False, download_files=str(tmp_path / "client"))
    cases = [([TARGET], "grid_lbax4n.mp4: 3 s long; this app takes videos up to 2 s"),
             ([TARGET] * 3, "upload 1 to 2 target images or videos (got 3)")]
    for targets, message in cases:
        with pytest.raises(Exception) as refused:
            client.predict([handle_file(str(t)) for t in targets], handle_file(str(DRIVER)), 0, "relative", 1.0,
                           "warp", "crop", False, 0, api_name="/reenact")
        assert str(refused.value) == message  # one line, naming the file, not its place on the server
    assert not [p for p in _files(Path(app.temp_dir)) if p.name == RESULT_NAME]


def test_api_refuses_an_oversize_upload(app: WebApp) -> None:
    import httpx

    before = _files(Path(app.temp_dir))
    answer = httpx.post(f"{app.url}gradio_api/upload", files={"files": ("big.jpg", bytes(1_200_000))})
    assert (answer.status_code, answer.text) == (413, "File size exceeded maximum allowed size of 1048576 bytes.")
    assert _files(Path(app.temp_dir)) == before  # nothing of it kept


def test_api_names_the_driver_face_apart_from_the_target_face(app: WebApp, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False, download_files=str(tmp_path / "client"))
    choices = dict(targets=[handle_file(str(TARGET))], driver=handle_file(str(DRIVER)), mode="relative", alpha=1.0,
                   renderer="warp", output="crop", side_by_side=False, max_frames=2, api_name="/reenact")
    video, verdict = client.predict(face=-1, driver_face=-1, **choices)
    assert verdict.endswith("\n2 frames, renderer warp")
    with pytest.raises(Exception) as refused:
        client.predict(face=-1, driver_face=1, **choices)  # the driver holds one face
    assert str(refused.value).startswith("grid_lbax4n.mp4: no face 1 ")


@pytest.mark.subprocess
def test_sigterm_stops_the_app_and_removes_its_uploads(tmp_path: Path) -> None:
    """How a service manager stops the app: as Ctrl-C does, nothing of a user left on disk."""
    import httpx

    folder = tmp_path / "app"
    app = subprocess.Popen([sys.executable, "-m", "marionette.cli", "app", "--port", str(_free_port()),
                            "--set", f"temp_dir={folder}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = app.stdout.readline()  # "marionette app on URL (Ctrl-C stops it)", once it serves
        url = line.split()[3] if line.startswith("marionette app on ") else pytest.fail(line + app.stderr.read())
        answer = httpx.post(f"{url}gradio_api/upload", files={"files": ("face.jpg", TARGET.read_bytes())})
        assert answer.status_code == 200 and [p.name for p in _files(folder)][-1:] == ["face.jpg"], answer.text
        app.send_signal(signal.SIGTERM)
        _, err = app.communicate(timeout=60)
    finally:
        app.kill()
    assert app.returncode == 143 and err.strip().splitlines()[-1] == "marionette: terminated", err
    assert list(folder.iterdir()) == []
