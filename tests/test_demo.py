"""`marionette demo` writes only marked synthetic media: the result videos and the frames sheet."""

from __future__ import annotations

import av

from marionette.inference import demo
from marionette.media import iter_video
from marionette.provenance import verify


def test_demo_outputs_are_marked(tmp_path, monkeypatch):
    short = tmp_path / "driver.mp4"  # the bundled driver cut to 12 frames keeps the test fast
    frames = [frame for _, frame in zip(range(12), iter_video(demo.DRIVER))]
    with av.open(str(short), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "18"})
        stream.height, stream.width = frames[0].shape[:2]
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    monkeypatch.setattr(demo, "DRIVER", short)
    written = demo.run_demo(tmp_path / "demo", progress=False)
    sheet = tmp_path / "demo" / "frames.png"
    assert sheet in written
    report = verify(sheet)
    assert report.tag is not None and report.watermark.present, report
    for video in (p for p in written if p.suffix == ".mp4"):
        assert verify(video).marked, video
