"""Hostile input, as a new user gives it: every case is refused with one `marionette: error:` line
(no traceback, exit 2), leaves no file behind and, where a careless tool would destroy something,
leaves every input and every file of the user byte-identical. Everyday media that used to crash
(NTSC and variable frame rates, PCM audio, mixed-size frame folders, 16-bit PNGs) now works."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import make_clip
from helpers import refused, snapshot
from PIL import Image

from marionette.cli import main
from marionette.media import iter_video, load_image, save_image
from marionette.provenance import verify

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TARGET = ASSETS / "faces" / "02_grace_hopper.jpg"
CLIP = ASSETS / "videos" / "grid_lbax4n.mp4"


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("driver") / "driver.mp4", frames=6)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver: Path) -> Path:
    """A user's folder, the current folder: their files, a copy of the target and of the driver,
    a folder of driver frames and a file where a folder might be expected."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "beach.jpg").write_bytes(TARGET.read_bytes())
    shutil.copy(TARGET, tmp_path / "target.jpg")
    shutil.copy(driver, tmp_path / "driver.mp4")
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(iter_video(driver)):
        save_image(tmp_path / "frames" / f"{i:04d}.png", frame)
    (tmp_path / "film.mp4").write_bytes(b"my own film")
    (tmp_path / "model.safetensors").write_bytes(b"my own model")
    (tmp_path / "dir.mp4").mkdir()
    (tmp_path / "project").mkdir()  # another program's settings, named as a run's are
    (tmp_path / "project" / "config.json").write_text('{"name": "my project", "version": 2}')
    return tmp_path


REENACT = ["reenact", "--target", "target.jpg", "--driver", "driver.mp4", "--quiet", "-o"]

# (argv, words the error names): each would destroy something of the user's if it were obeyed
DESTRUCTIVE = {
    "frames into the current folder": (REENACT + ["."], ["current"]),
    "frames into a folder of the user's": (REENACT + ["holiday"], ["holiday", "did not write"]),
    "output is the driver video": (REENACT + ["driver.mp4"], ["driver.mp4", "is an input"]),
    "output is the driver frames folder": (["reenact", "--target", "target.jpg", "--driver", "frames", "-o", "frames"],
                                           ["frames", "is an input"]),
    "output is the target": (["reenact", "--target", "film.mp4", "--driver", "driver.mp4", "-o", "film.mp4"],
                             ["is an input"]),
    "existing output without overwrite": (REENACT + ["film.mp4"], ["film.mp4", "overwrite"]),
    "file output onto a folder": (REENACT + ["dir.mp4"], ["dir.mp4", "is a folder"]),
    "output under a file": (REENACT + ["notes.txt/out.mp4"], ["notes.txt", "not a folder"]),
    "root folder": (REENACT + ["/"], ["root"]),
    "landmarks preview onto its image": (["landmarks", "target.jpg", "--out", "target.jpg"], ["is an input"]),
    "landmarks preview onto a file": (["landmarks", "target.jpg", "--out", "notes.txt"], ["exists"]),
    "dataset into its own videos": (["preprocess", "frames", "frames"], ["is an input"]),
    "dataset into the current folder": (["preprocess", "frames", "."], ["current"]),
    "dataset into a folder of the user's": (["preprocess", "frames", "holiday"], ["holiday", "not a marionette dataset"]),
    "training run into a folder of the user's": (["train", "--config", "tiny", "--data", "frames", "--run", "holiday"],
                                                 ["holiday", "not a marionette training run"]),
    "training run into a folder with a config.json of its own": (
        ["train", "--config", "tiny", "--data", "frames", "--run", "project"], ["project/config.json", "not a marionette"]),
    "evaluation into a folder of the user's": (["evaluate", "--data", "frames", "--out", "holiday"],
                                               ["holiday", "not a marionette evaluation report"]),
    "demo into a folder of the user's": (["demo", "--out", "holiday", "--quiet"], ["holiday", "not a marionette demo folder"]),
    "fit-landmarks onto a file": (["fit-landmarks", "frames", "--out", "model.safetensors"], ["model.safetensors", "exists"]),
}


@pytest.mark.parametrize("case", list(DESTRUCTIVE))
def test_destructive_outputs_are_refused_and_nothing_changes(case: str, home: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv, words = DESTRUCTIVE[case]
    before = snapshot(home)
    refused(argv, capsys, *words)
    assert snapshot(home) == before


def test_overwrite_replaces_only_marionette_outputs(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(REENACT + ["out", "--set", "size=128", "--set", "paste_back=false"]) == 0
    first = snapshot(home / "out")
    assert first and all(name.endswith(".png") for name in first)
    refused(REENACT + ["out", "--set", "size=128"], capsys, "overwrite")  # frames of an earlier run
    assert main(REENACT + ["out", "--set", "size=128", "--overwrite"]) == 0  # now replaced, in place
    assert snapshot(home / "out").keys() == first.keys() and snapshot(home / "out") != first
    (home / "out" / "mine.txt").write_text("a file of the user's")
    refused(REENACT + ["out", "--overwrite"], capsys, "did not write")
    assert (home / "out" / "mine.txt").read_text() == "a file of the user's"
    assert main(REENACT + ["film.mp4", "--set", "size=128", "--set", "overwrite=true"]) == 0
    assert verify(home / "film.mp4").watermark.present  # the file was replaced as asked
    leftovers = [p.name for p in home.iterdir() if ".partial-" in p.name]
    assert not leftovers


# (argv, SETTING=VALUE the error names)
SETTINGS = {
    "max_frames=-1": (REENACT + ["o.mp4", "--set", "max_frames=-1"], "max_frames=-1"),
    "alpha=nan": (REENACT + ["o.mp4", "--set", "alpha=nan"], "alpha=nan"),
    "alpha=inf": (REENACT + ["o.mp4", "--set", "alpha=inf"], "alpha=inf"),
    "target_frames=0": (REENACT + ["o.mp4", "--set", "target_frames=0"], "target_frames=0"),
    "face=-2": (REENACT + ["o.mp4", "--set", "face=-2"], "face=-2"),
    "crf=999": (REENACT + ["o.mp4", "--set", "crf=999"], "crf=999"),
    "negative cutoff": (REENACT + ["o.mp4", "--set", "smooth_min_cutoff=-1"], "smooth_min_cutoff=-1"),
    "not a number": (REENACT + ["o.mp4", "--set", "alpha=much"], "alpha=much"),
    "unknown setting": (REENACT + ["o.mp4", "--set", "colour=red"], "colour=red"),
    "not key=value": (REENACT + ["o.mp4", "--set", "alpha"], "alpha"),
    "mode": (REENACT + ["o.mp4", "--set", "mode=sideways"], "mode=sideways"),
    "device": (REENACT + ["o.mp4", "--set", "device=tpu"], "device=tpu"),
    "precision": (REENACT + ["o.mp4", "--set", "precision=fp8"], "precision=fp8"),
    "bench precision": (["bench", "reenact", "--set", "precision=fp8"], "precision=fp8"),
    "app device": (["app", "--set", "device=cuda:x"], "device=cuda:x"),
    "workers=-3": (["preprocess", "frames", "ds", "--workers", "-3"], "-3"),
    "jpeg_quality=0": (["preprocess", "frames", "ds", "--set", "jpeg_quality=0"], "jpeg_quality=0"),
    "fractions sum over 1": (["preprocess", "frames", "ds", "--set", "val_fraction=0.6", "--set", "test_fraction=0.6"],
                             "test_fraction=0.6"),
    "lr_g=nan": (["train", "--data", "frames", "--run", "run", "--set", "lr_g=nan"], "lr_g=nan"),
    "episodes.k_max=9": (["train", "--data", "frames", "--run", "run", "--set", "episodes.k_max=9"], "episodes.k_max=9"),
    "model size": (["train", "--data", "frames", "--run", "run", "--set", "model.image_size=100"], "image_size=100"),
    "loss weight": (["train", "--data", "frames", "--run", "run", "--set", "loss.pixel_weight=-1"], "pixel_weight=-1"),
    "fit lr": (["fit-landmarks", "frames", "--out", "lt", "--set", "lr=-1"], "lr=-1"),
    "shots=9": (["evaluate", "--data", "frames", "--out", "rep", "--set", "shots=1,9"], "shots=1,9"),
    "renderer": (["evaluate", "--data", "frames", "--out", "rep", "--set", "renderers=copy,magic"],
                 "renderers=copy,magic"),
    "evaluate precision": (["evaluate", "--data", "frames", "--out", "rep", "--set", "precision=half"], "precision=half"),
    "cross expression": (["evaluate", "--data", "frames", "--out", "rep", "--set", "cross_expression=smile"],
                         "cross_expression=smile"),
    "reference": (REENACT + ["o.mp4", "--set", "reference=last"], "reference=last"),
    "max_turn": (REENACT + ["o.mp4", "--set", "max_turn=2"], "max_turn=2"),
    "size": (REENACT + ["o.mp4", "--set", "size=10"], "size=10"),
    "old evaluate spelling": (["evaluate", "--data", "frames", "--out", "rep", "--shots", "1"], "--set KEY=VALUE"),
    "landmarks face": (["landmarks", "target.jpg", "--face", "-5"], "-5"),
    "bench repeats": (["bench", "reenact", "--repeats", "0"], "0"),
    "--set swallows nothing": (["preprocess", "--set", "max_frames=4", "frames"], "required"),
    "old train spelling": (["train", "--data", "frames", "--run", "run", "steps=3"], "--set KEY=VALUE"),
}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_bad_settings_are_one_line_naming_the_setting(case: str, home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv, setting = SETTINGS[case]
    before = snapshot(home)
    refused(argv, capsys, setting)
    assert snapshot(home) == before


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small RAM file system at `path` (root only: CI runs as root); skips where mounting fails."""
    path.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs to simulate it ({made.stderr.decode().strip()[:80]})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def dataset64(train_dataset: Path) -> Path:
    return train_dataset


# (where: full disk or read-only, argv with OUT for the place)
PLACES = {
    "reenact video, disk full": ("full", REENACT + ["OUT/o.mp4", "--set", "size=128"]),
    "reenact frames, disk full": ("full", REENACT + ["OUT/frames", "--set", "size=128"]),
    "reenact, read-only": ("ro", REENACT + ["OUT/o.mp4"]),
    "landmarks preview, read-only": ("ro", ["landmarks", "target.jpg", "--out", "OUT/p.png"]),
    "preprocess, disk full": ("full", ["preprocess", "videos", "OUT/ds", "--workers", "1", "--quiet"]),
    "preprocess, read-only": ("ro", ["preprocess", "videos", "OUT/ds", "--quiet"]),
    "fit-landmarks, read-only": ("ro", ["fit-landmarks", "DATA", "--out", "OUT/lt", "--quiet",
                                        "--set", "epochs=1", "--set", "split=all"]),
    "train, read-only": ("ro", ["train", "--config", "tiny", "--data", "DATA", "--run", "OUT/run", "--quiet"]),
    "evaluate, read-only": ("ro", ["evaluate", "--data", "DATA", "--out", "OUT/rep", "--quiet", "--set", "episodes=1",
                                   "--set", "shots=1", "--set", "modes=self", "--set", "renderers=copy"]),
}


@pytest.mark.subprocess
@pytest.mark.parametrize("case", list(PLACES))
def test_unwritable_places_are_one_line_and_leave_nothing(case: str, home: Path, dataset64: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    where, argv = PLACES[case]
    (home / "videos").mkdir()
    shutil.copy(CLIP, home / "videos" / "clip.mp4")
    with tmpfs(home / "place", "size=8k" if where == "full" else "ro,size=1m") as place:
        argv = [str(a).replace("OUT", str(place)).replace("DATA", str(dataset64)) for a in argv]
        line = refused(argv, capsys, str(place))
        assert ("No space left" if where == "full" else "Read-only file system") in line, line
        left = [p.relative_to(place).as_posix() for p in place.rglob("*")]
        if argv[0] == "preprocess":  # a dataset folder begun is resumed by a rerun; no partial clip stays
            assert not [name for name in left if ".partial-" in name], left
        else:
            assert left == [], left


def export_with(path: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    """A tiny generator export whose weights `change` edits."""
    from marionette.data.config import PreprocessConfig
    from marionette.inference.export import export_generator
    from marionette.model.config import model_config
    from marionette.model.generator import Generator

    torch.manual_seed(0)
    generator = Generator(model_config("tiny"))
    state = generator.state_dict()
    change(state)
    generator.load_state_dict(state)
    export_generator(path, generator, model_config("tiny"), PreprocessConfig(), 0)
    return path


def test_non_finite_weights_are_refused_at_load(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def poison(state: dict[str, torch.Tensor]) -> None:
        next(v for v in state.values() if v.is_floating_point())[0] = math.nan

    bad = export_with(home / "nan.safetensors", poison)
    refused(REENACT + ["o.mp4", "--checkpoint", bad], capsys, "nan.safetensors", "non-finite")
    assert not (home / "o.mp4").exists()


def test_non_finite_generator_output_stops_the_run(home: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from marionette.model.generator import Generator

    generate = Generator.generate

    def overflowing(self, *args, **kwargs):  # as finite weights whose activations overflow would
        out = generate(self, *args, **kwargs)
        out.image.fill_(math.inf)
        return out

    monkeypatch.setattr(Generator, "generate", overflowing)
    bad = export_with(home / "huge.safetensors", lambda state: None)
    refused(REENACT + ["o.mp4", "--checkpoint", bad], capsys, "huge.safetensors", "non-finite pixels")
    assert not (home / "o.mp4").exists() and not list(home.glob(".o.mp4*"))


def test_unreadable_images_are_one_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = home / "huge.png"
    Image.new("L", (14000, 14000)).save(big, optimize=False)  # a decompression bomb for PIL
    refused(["landmarks", big], capsys, "huge.png", "megapixels")
    (home / "broken.jpg").write_bytes(TARGET.read_bytes()[:200])
    refused(["landmarks", "broken.jpg"], capsys, "broken.jpg", "cannot read image")


def test_images_of_every_mode_read_as_they_look(tmp_path: Path) -> None:
    photo = load_image(TARGET)
    grey = photo.mean(2)
    cases = {
        "16-bit grey PNG": Image.fromarray((grey * 257).astype(np.uint16)),
        "palette PNG": Image.fromarray(photo).quantize(64),
        "CMYK JPEG": Image.fromarray(photo).convert("CMYK"),
    }
    for name, image in cases.items():
        path = tmp_path / (name.replace(" ", "_") + (".jpg" if "JPEG" in name else ".png"))
        image.save(path)
        read = load_image(path)
        assert read.shape == photo.shape and abs(read.astype(float).mean(2) - grey).mean() < 12, name
    rotated = tmp_path / "exif.jpg"  # stored on its side, with an EXIF tag saying to turn it upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(photo, 1))).save(rotated, exif=exif, quality=95)
    assert load_image(rotated).shape == photo.shape


def decoded_times(path: Path) -> tuple[list[float], float, list[str]]:
    """Frame times, the container's duration (s) and the codecs of an output."""
    with av.open(str(path)) as container:
        times = [float(f.time) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        return times, container.duration / 1e6, [s.codec_context.name for s in container.streams]


@pytest.mark.parametrize("name, rate, audio, times_ms", [
    ("ntsc_pcm.mov", Fraction(30000, 1001), "pcm_s16le", None),
    ("film_pcm.mkv", Fraction(24000, 1001), "pcm_s16le", None),
    ("vfr.mp4", 25, "aac", [0, 50, 80, 130, 160, 210, 240, 290, 330, 380, 400, 450]),
])
def test_everyday_drivers_keep_their_pace_and_sound(name: str, rate: Fraction, audio: str, times_ms: list[int] | None,
                                                    tmp_path: Path) -> None:
    driver = make_clip(tmp_path / name, rate=rate, audio=audio, times_ms=times_ms)
    out = tmp_path / "out.mp4"
    assert main(["reenact", "--target", str(TARGET), "--driver", str(driver), "-o", str(out), "--quiet",
                 "--set", "size=128", "--set", "paste_back=false"]) == 0
    in_times, in_duration, _ = decoded_times(driver)
    out_times, out_duration, codecs = decoded_times(out)
    assert np.allclose(out_times, in_times, atol=1e-3)  # every frame at the driver's own time
    assert abs(out_duration - in_duration) < 0.1 and codecs == ["h264", "aac"]  # PCM transcoded for mp4


@pytest.mark.parametrize("name, audio", [("talk.mp4", "aac"), ("talk.mov", "pcm_s16le")])  # copied, transcoded
def test_max_frames_cuts_the_sound_and_duration_to_the_frames_written(name: str, audio: str, tmp_path: Path) -> None:
    driver = make_clip(tmp_path / name, frames=12, audio=audio)  # 0.48 s of video and sound
    out = tmp_path / "out.mp4"
    assert main(["reenact", "--target", str(TARGET), "--driver", str(driver), "-o", str(out), "--quiet",
                 "--set", "size=128", "--set", "paste_back=false", "--set", "max_frames=3"]) == 0
    times, duration, codecs = decoded_times(out)
    with av.open(str(out)) as container:
        sound_end = max(float(f.time) + f.samples / f.sample_rate for f in container.decode(audio=0))
    assert len(times) == 3 and codecs == ["h264", "aac"]
    slack = 1024 / 16000 + 0.01  # one AAC frame: a copied packet's overhang, or the encoder's priming
    assert 0.08 < sound_end < 0.12 + slack and 0.12 <= duration < 0.12 + slack, (sound_end, duration)  # not 0.48 s


@pytest.mark.parametrize("suffix", [".mpg", ".flv", ".ts"])
def test_broadcast_and_legacy_containers_drive(suffix: str, tmp_path: Path) -> None:
    driver = make_clip(tmp_path / f"driver{suffix}", frames=5, size=(352, 288))
    out = tmp_path / "out.gif"
    assert main(["reenact", "--target", str(TARGET), "--driver", str(driver), "-o", str(out), "--quiet",
                 "--set", "size=128"]) == 0
    assert verify(out).watermark.present


def test_animated_gif_driver_drives_at_its_own_delays(tmp_path: Path) -> None:
    frames = [Image.fromarray(f) for f, _ in zip(iter_video(CLIP), range(4))]
    driver = tmp_path / "driver.gif"
    frames[0].save(driver, save_all=True, append_images=frames[1:], duration=[40, 80, 40, 40], loop=0)
    out = tmp_path / "out.mp4"
    assert main(["reenact", "--target", str(TARGET), "--driver", str(driver), "-o", str(out), "--quiet",
                 "--set", "size=128", "--set", "paste_back=false"]) == 0
    times, _, _ = decoded_times(out)
    assert np.allclose(times, [0, 0.04, 0.12, 0.16], atol=1e-3)


def test_mixed_size_frame_folder_drives(home: Path) -> None:
    for i, frame in enumerate(iter_video(home / "driver.mp4")):  # every other frame at another size
        if i % 2:
            save_image(home / "frames" / f"{i:04d}.png", np.ascontiguousarray(frame[::2, ::2]))
    assert main(["reenact", "--target", "target.jpg", "--driver", "frames", "-o", "mixed.mp4", "--quiet",
                 "--set", "size=128"]) == 0
    assert len(list(iter_video(home / "mixed.mp4"))) == len(list((home / "frames").iterdir()))


def test_truncated_driver_says_how_much_was_decoded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    whole = make_clip(tmp_path / "whole.mp4", frames=20)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    out = tmp_path / "out.mp4"
    assert main(["reenact", "--target", str(TARGET), "--driver", str(cut), "-o", str(out), "--quiet",
                 "--set", "size=128"]) == 0
    frames = len(list(iter_video(out)))
    assert 0 < frames < 20 and f"decoded {frames} of the 20 frames" in caplog.text


@pytest.mark.subprocess
def test_sigterm_stops_like_ctrl_c_and_leaves_no_temporary(tmp_path: Path) -> None:
    """How `timeout` and service managers stop a program: one line, and no partial output left."""
    driver = make_clip(tmp_path / "driver.mp4", frames=60)
    run = subprocess.Popen([sys.executable, "-m", "marionette.cli", "reenact", "--target", str(TARGET), "--driver",
                            str(driver), "-o", str(tmp_path / "out.mp4"), "--quiet", "--set", "size=128"],
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.mp4.partial-*")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # until the output is being written
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143 and err.strip().splitlines()[-1] == "marionette: terminated", err
    assert "Traceback" not in err and [p.name for p in tmp_path.iterdir()] == ["driver.mp4"]


def test_sigterm_that_a_library_wraps_in_its_own_error_still_stops_as_sigterm(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """torch, creating a tensor while the signal lands, turns the signal's exception into a TypeError,
    which a loader reports as a bad file: the command still ends as terminated, not as a bad input."""
    import argparse

    import marionette.cli as cli
    from marionette.errors import InputError

    def loading(args: argparse.Namespace) -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal lands here
        except KeyboardInterrupt:
            raise InputError("face_landmarks.safetensors: invalid converted face-mesh model") from None

    def bad_file(args: argparse.Namespace) -> None:
        raise InputError("x.png: not an image")

    for command, status, said in ((loading, 143, "marionette: terminated"),
                                  (bad_file, 2, "marionette: error: x.png: not an image")):  # no SIGTERM left over
        parser = argparse.Namespace(parse_args=lambda argv, func=command: argparse.Namespace(func=func))
        monkeypatch.setattr(cli, "build_parser", lambda parser=parser: parser)
        assert cli.main([]) == status and capsys.readouterr().err.strip() == said


def group_photo(path: Path) -> Path:
    """The bundled portraits side by side, 400 px high: three people in one photo."""
    import cv2

    faces = [load_image(p) for p in sorted((ASSETS / "faces").glob("*.jpg"))]
    faces = [cv2.resize(f, (round(f.shape[1] * 400 / f.shape[0]), 400), interpolation=cv2.INTER_AREA) for f in faces]
    save_image(path, np.concatenate(faces, axis=1))
    return path


def test_every_face_of_a_group_photo_numbered_left_to_right(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    group = group_photo(tmp_path / "group.png")
    import json

    assert main(["landmarks", str(group), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["faces"]) == 3
    lefts = [f["box"][0] for f in report["faces"]]
    assert lefts == sorted(lefts)
    widths = [f["face_width"] for f in report["faces"]]
    assert report["face"] == widths.index(max(widths))  # by default the largest
    assert main(["landmarks", str(group), "--json", "--face", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["face"] == 1
    refused(["landmarks", group, "--face", "3"], capsys, "face 3", "only 3")


def test_png_output_is_one_image_of_a_one_frame_driver(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(home)
    line = refused(REENACT + ["result.png"], capsys, "result.png", "driver.mp4", "folder")
    assert snapshot(home) == before, line  # no folder named result.png
    assert main(["reenact", "--target", "target.jpg", "--driver", "frames/0000.png", "-o", "result.png", "--quiet",
                 "--set", "size=128"]) == 0
    assert (home / "result.png").is_file() and verify(home / "result.png").watermark.present


def test_landmark_transformer_errors_name_the_file_given(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "evil.pt").write_bytes(b"a pickle, perhaps")
    refused(REENACT + ["o.mp4", "--landmark-transformer", "evil.pt"], capsys, "evil.pt", "not a landmark transformer")
    (home / "evil.safetensors").write_bytes(b"half of a pair")
    refused(REENACT + ["o.mp4", "--landmark-transformer", "evil.safetensors"], capsys, "evil.safetensors:",
            "evil.json is missing")
    refused(REENACT + ["o.mp4", "--landmark-transformer", "gone.safetensors"], capsys, "gone.safetensors: no such file")
    assert not (home / "o.mp4").exists()


def test_face_picks_the_target_face_and_driver_face_the_drivers(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    group = group_photo(home / "group.png")
    quick = ["--quiet", "--set", "size=128", "--set", "max_frames=2"]
    assert main(["reenact", "--target", str(group), "--driver", "driver.mp4", "-o", "o.mp4", "--set", "face=2", *quick]) == 0
    assert len(list(iter_video(home / "o.mp4"))) == 2  # the one-face driver drove the third person
    refused(["reenact", "--target", "target.jpg", "--driver", "driver.mp4", "-o", "p.mp4", "--set", "driver_face=1",
             *quick], capsys, "driver.mp4", "no face 1", "driver_face=-1")
    assert not (home / "p.mp4").exists()


@pytest.mark.parametrize("name", ["o.mp4", "o_frames"])
def test_an_output_written_meanwhile_by_another_run_is_kept(name: str, home: Path) -> None:
    """Two runs write the same new output: the one that ends second is refused, the first's output
    stays, and neither removes the other's temporaries."""
    from marionette.errors import InputError
    from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
    from marionette.media import sweep_temporaries

    out = home / name
    theirs = out if out.suffix else out / "000000.png"

    def other_run(_: np.ndarray) -> None:
        assert sweep_temporaries(out) == []  # as another run starting now would: this run's temporary stays
        if not out.exists():  # while this run is writing, the other one puts its own output in place
            theirs.parent.mkdir(exist_ok=True)
            theirs.write_bytes(b"the other run's output")

    pipeline = ReenactPipeline(ReenactConfig(size=128, max_frames=2))
    with pytest.raises(InputError, match=f"{name}: was written meanwhile"):
        pipeline.run(["target.jpg"], "driver.mp4", out, progress=False, on_frame=other_run)
    assert theirs.read_bytes() == b"the other run's output"
    assert out.is_file() or [p.name for p in out.iterdir()] == ["000000.png"]  # no frame of this run added
    assert not [p.name for p in home.iterdir() if ".partial-" in p.name]
