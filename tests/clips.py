"""Test clips made with PyAV from a bundled GRID clip (shared by the test modules)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from marionette.media import iter_video

CLIP = Path(__file__).resolve().parents[1] / "assets" / "videos" / "grid_lbax4n.mp4"


def make_clip(path: Path, frames: int = 12, rate: Fraction | int = 25, audio: str | None = None,
              times_ms: list[int] | None = None, size: tuple[int, int] = (360, 288),
              blank: frozenset[int] = frozenset()) -> Path:
    """The first frames of a bundled clip re-encoded: a frame rate (e.g. 30000/1001), or per-frame
    times in ms (variable rate), and optionally a 440 Hz tone as `audio` (e.g. pcm_s16le, aac).
    MP4s have their index first (as streamed files do), so a truncated one still announces all."""
    options = {"movflags": "faststart"} if path.suffix == ".mp4" else {}
    with av.open(str(path), "w", container_options=options) as out:
        video = out.add_stream("libx264" if path.suffix not in (".mpg", ".flv") else
                               {".mpg": "mpeg2video", ".flv": "flv"}[path.suffix], rate=rate)
        video.width, video.height, video.pix_fmt = *size, "yuv420p"
        if times_ms is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        sound = out.add_stream(audio, rate=16000) if audio else None
        if sound is not None and path.suffix == ".mkv" and audio.startswith("pcm"):
            sound.layout = "mono"
        for i, frame in enumerate(iter_video(CLIP)):
            if i == frames:
                break
            frame = np.zeros_like(frame) if i in blank else frame
            frame = np.ascontiguousarray(frame[: size[1], : size[0]])
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if times_ms is not None:
                vf.pts, vf.time_base = times_ms[i], Fraction(1, 1000)
            for packet in video.encode(vf):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            seconds = (times_ms[frames - 1] / 1000 + 0.04) if times_ms else frames / float(rate)
            t = np.arange(round(16000 * seconds)) / 16000
            tone = 0.3 * np.sin(2 * np.pi * 440 * t)
            pcm = audio.startswith("pcm")
            samples = av.AudioFrame.from_ndarray((tone * 32767).astype(np.int16)[None] if pcm
                                                 else tone.astype(np.float32)[None],
                                                 format="s16" if pcm else "fltp", layout="mono")
            samples.sample_rate = 16000
            for packet in sound.encode(samples):
                out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path
