"""`marionette app`: a web page and an HTTP API for reenactment (ours; Gradio, an optional extra:
`pip install "marionette[app]"`).

Thin: a job builds a `ReenactPipeline` from the page's choices and calls its `run()`; the target
preview calls `landmark_report`; the verdict is `verify`'s. Nothing of the pipeline is redone here.

Limits (AppConfig): uploads bigger than `max_upload_mb` are refused by Gradio before any job sees
them; drivers and target videos longer than `max_seconds` and more than `max_targets` targets are
refused with one message; jobs wait in a queue of `queue_size` and run `concurrency` at a time
(target previews likewise, on a turn of their own), and a job that finds the queue full is
refused ("Queue is full"). Files: the app makes a folder
of its own (in `temp_dir`) and makes it Gradio's cache, where uploads and results live; a job
writes its result into a subfolder, removed at once if the job fails; the target preview's image
is removed as soon as it is read. Uploads and results are deleted `keep_minutes` after they were
made, and the whole folder when the app stops. The app binds
127.0.0.1 unless told otherwise. Torch loads when the app starts (the pipeline, with the marks, when a job
runs), not when the command line only reads AppConfig (`marionette --help`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marionette.config import MAX_SHOTS, Rule, Settings, between, setting, text
from marionette.errors import InputError
from marionette.inference.config import ReenactConfig, device_setting, precision_setting
from marionette.inference.renderers import generator_renderer
from marionette.landmarks.mesh import LARGEST
from marionette.media import IMAGE_EXTS, load_image, probe_video

MB = 1 << 20  # Gradio counts upload sizes in units of 1024
RESULT_NAME = "reenacted.mp4"  # the file a job writes (and a user downloads)


@dataclass(frozen=True)
class AppConfig(Settings):
    host: str = setting("127.0.0.1", "address to listen on; 0.0.0.0 opens the app to the whole network", text())
    port: int = setting(7860, "TCP port (0: the first free one from 7860)", between(0, 65535))
    max_upload_mb: float = setting(50.0, "largest file accepted, megabytes; Gradio refuses bigger uploads",
                                   between(0.01, 100_000))
    max_seconds: float = setting(60.0, "longest driver or target video accepted, seconds", between(0.1, 86_400))
    max_targets: int = setting(8, "most target files per job (K)", between(1, MAX_SHOTS))
    concurrency: int = setting(1, "jobs run at the same time (each keeps about one CPU core busy)", between(1, 64))
    queue_size: int = setting(8, 'jobs that may wait for a turn; a job beyond them is refused ("Queue is full")',
                              between(1, 10_000))
    keep_minutes: float = setting(30.0, "uploads and results are deleted this long after they were made",
                                  between(0, 100_000))
    temp_dir: str = setting("",
                            'where the app\'s folder of uploads, results and job files is made ("": the'
                            ' system temp folder); removed at exit',
                            Rule(lambda v: isinstance(v, str), "a folder, or empty for the system's"))
    checkpoint: str = setting("",
                              'a trained generator export (or its ONNX export folder) for the neural (onnx)'
                              ' renderer ("": the shipped generator)',
                              Rule(lambda v: isinstance(v, str), "an export file, or empty for the shipped one"))
    device: str = device_setting()
    precision: str = precision_setting()


def _video_seconds(path: str) -> tuple[int, float]:
    """(frames, seconds) of a video; a recording without a frame rate counts at 25 frames/s."""
    info = probe_video(path)
    return info.frames, info.frames / (info.fps or 25.0)


def _names_only(message: str, paths: list[str]) -> str:
    """A message about uploaded files, naming each by its file name, not its place on the server."""
    for path in sorted(paths, key=len, reverse=True):
        message = message.replace(path, Path(path).name)
    return message


def _progress_bar(total: int, progress: Callable[..., None]) -> Callable[[object], None]:
    """An on_frame callback that moves a Gradio progress bar: frames done of `total`, and time left."""
    start, done = time.perf_counter(), 0

    def on_frame(_frame: object) -> None:
        nonlocal done
        done += 1
        left = (time.perf_counter() - start) / done * max(total - done, 0)
        progress((done, total), desc=f"{done}/{total} frames, about {left:.0f} s left", unit="frames")

    return on_frame


class WebApp:
    """The Gradio app: `start()` serves it (in the background), `close()` stops it and removes its folder."""

    def __init__(self, config: AppConfig = AppConfig()):
        try:
            import gradio
        except ImportError:
            raise InputError('the app needs Gradio: pip install "marionette[app]"') from None
        self.gr = gradio
        self.config = config
        if config.temp_dir:
            Path(config.temp_dir).mkdir(parents=True, exist_ok=True)
        # a folder of its own, removed whole at exit (with what Gradio leaves in it, such as its upload staging files)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="marionette-app-", dir=config.temp_dir or None)).resolve()
        from marionette.devices import placement

        self.renderers = ["warp", generator_renderer(config.checkpoint) if config.checkpoint else "neural"]  # the last: default
        # the neural renderer's device, resolved once: an absent one is said at start, not in every job
        self.device_settings = placement(config.device, config.precision).settings()
        # Gradio reads its cache folder from GRADIO_TEMP_DIR, when making components and when
        # checking that a request's files were uploaded: it holds for the app's life
        self._env_before = os.environ.get("GRADIO_TEMP_DIR")
        os.environ["GRADIO_TEMP_DIR"] = str(self.temp_dir)
        self.blocks = self._build()
        self.url = ""

    # --- the two actions ---------------------------------------------------------------------

    def preview(self, targets: list[str] | None, face: float) -> tuple[list[tuple[Any, str]], str]:
        """Each target image with the face mesh's 68 points drawn, beside the landmark image the
        renderer sees (`marionette landmarks`), captioned with the head pose."""
        from marionette.landmarks.preview import landmark_report

        shown, notes = [], []
        for path in (targets or [])[: self.config.max_targets]:
            name = Path(path).name
            if Path(path).suffix.lower() not in IMAGE_EXTS:
                notes.append(f"{name}: a video; its frames are sampled when the job runs")
                continue
            with tempfile.TemporaryDirectory(dir=self.temp_dir, prefix="preview-") as folder:
                try:
                    report = landmark_report(Path(path), face_index=int(face), preview=Path(folder) / "preview.png")
                except InputError as e:
                    notes.append(_names_only(str(e), [path]))
                    continue
                image = load_image(Path(folder) / "preview.png")
            pose = report["pose"]
            shown.append((image, f"{name}: yaw {pose['yaw']:.0f}, pitch {pose['pitch']:.0f}, roll {pose['roll']:.0f} deg"))
        return shown, "\n".join(notes)

    def reenact(self, targets: list[str] | None, driver: str | None, face: float, mode: str, alpha: float,
                renderer: str, output: str, side_by_side: bool, max_frames: float, driver_face: float = LARGEST,
                progress: Any = None) -> tuple[str, str]:
        """Run one job; returns (result video, verify's verdict and the run's figures). `face`,
        `driver_face`: as the settings of that name (-1 the largest, else numbered from 0, left to right)."""
        from marionette.inference.pipeline import ReenactPipeline
        from marionette.provenance import format_report, verify

        gr = self.gr
        targets = list(targets or [])
        uploads = targets + ([driver] if driver else [])
        try:
            frames = self._check(targets, driver)
            if int(max_frames) > 0:
                frames = min(frames, int(max_frames))
            config = ReenactConfig(renderer=renderer, mode=mode, alpha=float(alpha), face=int(face),
                                   driver_face=int(driver_face),
                                   paste_back=output == "paste back", side_by_side=bool(side_by_side),
                                   max_frames=max(int(max_frames), 0), **self.device_settings)
            pipeline = ReenactPipeline(config, checkpoint=self.config.checkpoint or None)
            job = Path(tempfile.mkdtemp(dir=self.temp_dir, prefix="job-"))
            try:
                out = job / RESULT_NAME
                stats = pipeline.run(targets, driver, out, progress=False,
                                     on_frame=_progress_bar(frames, progress) if progress is not None else None)
                verdict = format_report(verify(out)).replace(str(out), RESULT_NAME)
            except BaseException:
                shutil.rmtree(job, ignore_errors=True)
                raise
        except InputError as e:
            raise gr.Error(_names_only(str(e), uploads), print_exception=False) from None
        figures = f"{stats.frames} frames, renderer {pipeline.renderer_name}" + (
            f"; {stats.faceless} driver frames without a face held the last landmarks" if stats.faceless else "")
        return str(out), f"{verdict}\n{figures}"

    def _check(self, targets: list[str], driver: str | None) -> int:
        """Refuse what the limits exclude (one message); returns the driver's frame count."""
        limit = self.config.max_targets
        if not 1 <= len(targets) <= limit:
            raise InputError(f"upload 1 to {limit} target images or videos (got {len(targets)})")
        if not driver:
            raise InputError("upload or record a driver video")
        videos = [path for path in targets if Path(path).suffix.lower() not in IMAGE_EXTS]
        for path in [*videos, driver]:
            frames, seconds = _video_seconds(path)
            if seconds > self.config.max_seconds:
                raise InputError(f"{path}: {seconds:.0f} s long; this app takes videos up to "
                                 f"{self.config.max_seconds:.0f} s")
        return frames  # the driver's, checked last

    # --- the page ------------------------------------------------------------------------------

    def _build(self):
        gr = self.gr
        config = self.config
        keep = max(round(60 * config.keep_minutes), 1)

        def run(targets, driver, face, mode, alpha, renderer, output, side_by_side, max_frames, driver_face,
                progress=gr.Progress()):
            return self.reenact(targets, driver, face, mode, alpha, renderer, output, side_by_side, max_frames,
                                driver_face, progress)

        with gr.Blocks(title="marionette", analytics_enabled=False, delete_cache=(min(keep, 60), keep)) as blocks:
            gr.Markdown("## marionette: few-shot face reenactment\nAnimate a face in 1 to "
                        f"{config.max_targets} photos with the motion of a driver video. Every result is "
                        "marked as synthetic media: a container tag and an invisible watermark, which "
                        "`marionette verify` finds.")
            with gr.Row():
                with gr.Column():
                    targets = gr.File(label=f"Target: 1 to {config.max_targets} photos of one face (or a video)",
                                      file_count="multiple", file_types=["image", "video"], elem_id="targets")
                    landmarks = gr.Gallery(label="What the system sees in the target", columns=1, height=300,
                                           object_fit="contain", elem_id="landmarks")
                    notes = gr.Markdown(elem_id="notes")
                with gr.Column():
                    driver = gr.Video(label=f"Driver: a video up to {config.max_seconds:.0f} s, or record one",
                                      sources=["upload", "webcam"], include_audio=True, elem_id="driver")
                with gr.Column():
                    face = gr.Number(LARGEST, label="Target face (-1 = largest, else 0, 1, ... from the left)",
                                     precision=0, minimum=LARGEST, maximum=15, elem_id="face")
                    driver_face = gr.Number(LARGEST, label="Driver face (-1 = largest, else 0, 1, ... from the left)",
                                            precision=0, minimum=LARGEST, maximum=15, elem_id="driver_face")
                    mode = gr.Radio(["relative", "absolute"], value="relative", label="Motion",
                                    info="relative: the driver's motion from its neutral face")
                    alpha = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Expression strength")
                    renderer = gr.Dropdown(self.renderers, value=self.renderers[-1], label="Renderer")
                    output = gr.Radio(["paste back", "crop"], value="paste back", label="Output")
                    side_by_side = gr.Checkbox(False, label="Side by side: driver | target | result")
                    max_frames = gr.Number(0, label="Frames (0 = the whole driver)", precision=0, minimum=0,
                                           elem_id="max_frames")
                    go = gr.Button("Reenact", variant="primary", elem_id="run")
            with gr.Row():
                result = gr.Video(label="Result (marked as synthetic)", height=420, elem_id="result", interactive=False)
                verdict = gr.Textbox(label="marionette verify", lines=3, elem_id="verdict")
            for trigger in (targets.change, face.change):
                trigger(self.preview, [targets, face], [landmarks, notes], api_visibility="private",
                        concurrency_limit=config.concurrency, concurrency_id="preview")
            go.click(run, [targets, driver, face, mode, alpha, renderer, output, side_by_side, max_frames, driver_face],
                     [result, verdict], api_name="reenact", concurrency_limit=config.concurrency,
                     concurrency_id="reenact")
        blocks.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
        return blocks

    # --- serving -------------------------------------------------------------------------------

    def start(self) -> str:
        """Serve in the background; returns the page's address."""
        _, self.url, _ = self.blocks.launch(
            server_name=self.config.host, server_port=self.config.port or None, prevent_thread_lock=True,
            max_file_size=int(self.config.max_upload_mb * MB), quiet=True, share=False, ssr_mode=False)
        return self.url

    def close(self) -> None:
        """Stop serving; delete the app's folder: every upload and result."""
        self.blocks.close()
        if self._env_before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = self._env_before
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def serve(config: AppConfig) -> None:
    """Serve until Ctrl-C or SIGTERM (KeyboardInterrupt; the `marionette app` command), then remove
    the app's folder."""
    app = WebApp(config)
    try:
        print(f"marionette app on {app.start()} (Ctrl-C stops it)", flush=True)
        while app.blocks.is_running:  # Gradio's own wait would swallow the interrupt
            time.sleep(0.1)
    finally:
        app.close()
