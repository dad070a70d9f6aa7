"""Synthetic-media marks: the watermark survives a real H.264 round trip, a downscale, and (through
the search) a crop + mirror + rescale and the ways people repost (pillarboxed, beside another
image, in a page, a 12% crop, turned up to 5 degrees), stays invisible (PSNR) and silent on
unmarked frames or a wrong key; container tags round-trip; C2PA manifests (embedded, or an mkv's
sidecar) are valid, name marionette and the inputs' hashes, and break when the file is tampered
with; verify's levels (trusted signer, claims, edited after signing, no mark), their exit statuses
and JSON; a deployment's own watermark key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from marionette import __version__, provenance
from marionette.content_credentials import CERT_ENV, KEY_ENV, TRUST_ENV, _generate_local, config_dir
from marionette.errors import InputError
from marionette.inference.io import FrameWriter
from marionette.media import iter_video, load_image
from marionette.provenance import (
    CELLS,
    DEFAULT_KEY,
    MOV_MUXER_OPTIONS,
    PHASES,
    SEARCH_ANGLES,
    SEARCH_HYPOTHESES,
    SEARCH_SCALES,
    SEARCH_THRESHOLD,
    TAG_KEY,
    THRESHOLD,
    TILE,
    WATERMARK_KEY_ENV,
    Level,
    Watermark,
    container_tags,
    format_report,
    png_info,
    read_container_tag,
    save_marked_image,
    verify,
)

CLIP = Path(__file__).resolve().parents[1] / "assets" / "videos" / "grid_brbk7n.mp4"  # 360x288 talking head, 25 fps
FACE = Path(__file__).resolve().parents[1] / "assets" / "faces" / "02_grace_hopper.jpg"  # an unmarked photo
FRAMES = 25


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [f for _, f in zip(range(FRAMES), iter_video(CLIP))]


@pytest.fixture(scope="module")
def marked(frames) -> list[np.ndarray]:
    return [Watermark().embed(f) for f in frames]


def write_h264(path, frames: list[np.ndarray], crf: int, tags: dict[str, str] | None = None) -> None:
    """A real mp4 through PyAV's libx264 (yuv420p), as the pipeline writes it."""
    with av.open(str(path), "w", format="mp4", options=MOV_MUXER_OPTIONS) as container:
        container.metadata.update(tags or {})
        stream = container.add_stream("libx264", rate=25, options={"crf": str(crf)})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))


def test_embed_keeps_shape_and_is_invisible(frames, marked):
    assert marked[0].shape == frames[0].shape and marked[0].dtype == np.uint8
    assert not np.array_equal(marked[0], frames[0])
    assert min(psnr(a, b) for a, b in zip(frames, marked)) > 40.0


def test_survives_h264_crf28(tmp_path, frames, marked):
    path = tmp_path / "marked.mp4"
    write_h264(path, marked, crf=28)
    report = verify(path)
    assert report.kind == "video" and report.watermark.frames == FRAMES
    assert report.watermark.present, report.watermark
    assert report.tag is None  # no container tag was written: the pixels alone carry the mark
    assert "synthetic" in format_report(report)


def test_unmarked_and_wrong_key_are_not_detected(tmp_path, frames):
    path = tmp_path / "plain.mp4"
    write_h264(path, frames, crf=23)
    report = verify(path)
    assert not report.watermark.present and abs(report.watermark.score) < THRESHOLD, report.watermark
    assert format_report(report).startswith(f"{path}: no marionette mark found")

    decoded = list(iter_video(tmp_path / "plain.mp4"))
    assert abs(Watermark().detect(decoded).score) < THRESHOLD
    other = Watermark(key=12345)
    marked_other = [other.embed(f) for f in frames]
    assert other.detect(marked_other).present  # the other key's own mark is there...
    assert not Watermark().detect(marked_other).present  # ...and the default key does not see it


def test_survives_half_downscale(frames, marked):
    h, w = frames[0].shape[:2]
    small = [cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for f in marked]
    detection = Watermark().detect(small)
    assert detection.present and detection.frames == FRAMES, detection


def test_single_marked_image_detected(tmp_path, frames, marked):
    path = tmp_path / "frame.png"
    Image.fromarray(marked[0]).save(path, pnginfo=png_info(container_tags("test")))
    report = verify(path)
    assert report.kind == "image" and report.watermark.present and report.watermark.frames == 1
    assert not Watermark().detect(frames[:1]).present


def test_container_tag_round_trip_mp4_and_png(tmp_path, frames):
    tags = container_tags("warp")
    mp4 = tmp_path / "tagged.mp4"
    write_h264(mp4, frames[:3], crf=23, tags=tags)
    assert read_container_tag(mp4) == tags["comment"] and "renderer warp" in tags["comment"]
    with av.open(str(mp4)) as container:
        assert container.metadata[TAG_KEY] == tags[TAG_KEY]

    png = tmp_path / "tagged.png"
    Image.fromarray(frames[0]).save(png, pnginfo=png_info(tags))
    assert read_container_tag(png) == tags["comment"]

    plain = tmp_path / "plain.png"
    Image.fromarray(frames[0]).save(plain)
    assert read_container_tag(plain) is None


def test_verify_corrupt_file_names_the_path(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    with pytest.raises(InputError, match="broken.mp4"):
        verify(bad)
    with pytest.raises(InputError, match="missing.png"):
        verify(tmp_path / "missing.png")


def test_verify_command_exit_status_json_and_folders(tmp_path, capsys, frames, marked):
    from marionette.cli import main

    good, plain = tmp_path / "made" / "good.png", tmp_path / "plain.png"
    good.parent.mkdir()
    Image.fromarray(marked[0]).save(good)
    Image.fromarray(frames[0]).save(plain)
    (good.parent / "notes.txt").write_text("not media: skipped when a folder is walked")
    assert main(["verify", str(good)]) == 3  # a watermark alone claims marionette, it proves nothing
    assert main(["verify", str(good.parent)]) == 3  # the folder's one image, the text file skipped
    assert main(["verify", str(good), str(plain)]) == 1
    capsys.readouterr()

    missing, empty = tmp_path / "missing.mp4", tmp_path / "empty"
    empty.mkdir()
    assert main(["verify", "--json", str(missing), str(plain), str(empty), str(good)]) == 2
    out, err = capsys.readouterr()
    errors = err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("marionette: error: ") for line in errors)
    assert "missing.mp4" in errors[0] and "empty" in errors[1]
    results = json.loads(out)  # one entry per file, in order, the rest checked after an error
    assert [Path(r["path"]).name for r in results] == ["missing.mp4", "plain.png", "empty", "good.png"]
    assert "error" in results[0] and "error" in results[2]
    assert results[1]["marked"] is False and results[3]["marked"] is True
    assert results[1]["level"] == "unmarked" and results[3]["level"] == "claims" and results[3]["exit_status"] == 3
    assert results[3]["watermark"]["present"] and results[3]["watermark"]["score"] >= THRESHOLD


def test_outputs_carry_a_valid_c2pa_manifest_naming_marionette_and_its_inputs(tmp_path, marked):
    target = Path(__file__).resolve().parents[1] / "assets" / "faces" / "02_grace_hopper.jpg"
    tags = container_tags("warp", targets=[target], driver=CLIP)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (target, CLIP)}
    for name in ("out.mp4", "out.gif", "frames", "clip.mkv"):
        with FrameWriter(tmp_path / name, 25, tags) as writer:
            for frame in marked[:4]:
                writer.write(frame)
    save_marked_image(tmp_path / "sheet.jpg", marked[0], "warp", quality=90)
    assert (tmp_path / "clip.c2pa").is_file() and not (tmp_path / "out.c2pa").exists()  # mkv only: a sidecar
    for path in (tmp_path / "out.mp4", tmp_path / "out.gif", tmp_path / "frames" / "000002.png", tmp_path / "clip.mkv"):
        report = verify(path)
        m = report.manifest
        assert m is not None and m.valid and m.failures == () and m.by_marionette, (path, m)
        assert m.generator == f"marionette {__version__}" and m.local_signer
        assert m.action == "c2pa.created (trainedAlgorithmicMedia; renderer warp)"
        assert m.ingredients == tuple(f"{n} (sha256:{d})" for n, d in digests.items())  # hashes, not pixels
        assert report.tag is not None and report.watermark.present
        assert "C2PA: valid manifest signed by marionette local signer" in format_report(report)
        assert report.level is Level.TRUSTED  # this machine's local root is trusted here
    sheet = verify(tmp_path / "sheet.jpg")
    assert sheet.manifest.by_marionette and sheet.tag is not None and sheet.watermark.present
    assert (config_dir() / "c2pa" / "signer.key").stat().st_mode & 0o777 == 0o600  # under the test's XDG_CONFIG_HOME

    # tampering with the pixels breaks the manifest; the watermark still speaks
    (tmp_path / "tampered.c2pa").write_bytes((tmp_path / "clip.c2pa").read_bytes())  # the mkv's sidecar goes along
    for path, offset in ((tmp_path / "out.mp4", -300), (tmp_path / "sheet.jpg", -300), (tmp_path / "clip.mkv", -300)):
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x5A
        tampered = path.with_name(f"tampered{path.suffix}")
        tampered.write_bytes(bytes(data))
        report = verify(tampered)
        m = report.manifest
        assert m is not None and not m.valid and any("mismatch" in f for f in m.failures), (path, m)
        assert report.level is Level.EDITED and report.watermark.present
        assert "C2PA: manifest INVALID" in format_report(report)


def test_unwritable_config_folder_signs_with_a_one_run_certificate_and_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, marked) -> None:
    config = tmp_path / "config"
    config.write_text("a file where the config folder would be")  # as a read-only home, even for root
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    for name in ("a.png", "b.jpg"):
        save_marked_image(tmp_path / name, marked[0], "warp")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cannot store the local C2PA certificate" in warnings[0], warnings
    assert f"{config}/marionette/c2pa:" in warnings[0] and "this run only" in warnings[0]
    for name in ("a.png", "b.jpg"):
        m = verify(tmp_path / name).manifest
        assert m is not None and m.valid and m.by_marionette and m.local_signer, m


def test_file_without_manifest_reports_none(tmp_path, frames, monkeypatch):
    plain = tmp_path / "plain.png"
    Image.fromarray(frames[0]).save(plain)
    report = verify(plain)
    assert report.manifest is None and not report.marked and "C2PA: no manifest" in format_report(report)
    assert report.to_dict()["c2pa"] is None
    monkeypatch.setenv("MARIONETTE_C2PA_CERT", str(plain))  # a user signer needs both files
    with pytest.raises(InputError, match="MARIONETTE_C2PA_KEY"):
        save_marked_image(tmp_path / "x.png", frames[0], "warp")
    assert not (tmp_path / "x.png").exists()


def test_mark_survives_crop_mirror_and_rescale_through_the_search(tmp_path, frames, marked):
    assert len(SEARCH_SCALES) * len(SEARCH_ANGLES) * PHASES**2 * TILE**2 * 2 == SEARCH_HYPOTHESES
    assert SEARCH_HYPOTHESES * np.exp(-SEARCH_THRESHOLD**2 / 2) <= 4e-6 + 1e-12  # the union bound holds
    h, w = frames[0].shape[:2]
    ch, cw = round(h * 0.7071), round(w * 0.7071)  # 50% of the area, at the bottom-right corner

    size = (round(cw * 1.3 / 2) * 2, round(ch * 1.3 / 2) * 2)  # 1.3x, even for yuv420p

    def edit(clip):  # crop, mirror, rescale
        return [cv2.resize(np.ascontiguousarray(f[h - ch :, w - cw :][:, ::-1]), size) for f in clip]

    path = tmp_path / "reuploaded.mp4"
    write_h264(path, edit(marked), crf=28)
    report = verify(path)
    w_ = report.watermark
    assert w_.score < THRESHOLD and w_.present, w_  # the frame's own grid is lost; the search finds it
    assert w_.search.mirrored and w_.search.score >= SEARCH_THRESHOLD and abs(w_.search.cells / (CELLS * 0.7071) - 1) < 0.1, w_.search
    assert "search" in format_report(report)

    write_h264(path, edit(frames), crf=28)
    plain = verify(path).watermark
    assert not plain.present and plain.search.score < SEARCH_THRESHOLD, plain
    other = Watermark(key=12345)
    assert not Watermark().detect(edit([other.embed(f) for f in frames]), search=True).present  # another key's mark


def turned(frame: np.ndarray, degrees: float) -> np.ndarray:
    """The frame turned counter-clockwise about its centre, black corners (a tilted re-shoot)."""
    h, w = frame.shape[:2]
    return cv2.warpAffine(frame, cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0), (w, h))


def beside(frame: np.ndarray) -> np.ndarray:
    """The frame to the right of an unmarked photo of the same height (a side-by-side repost)."""
    photo = load_image(FACE)
    h = frame.shape[0]
    width = round(photo.shape[1] * h / photo.shape[0] / 2) * 2  # even for yuv420p
    return np.hstack([cv2.resize(photo, (width, h), interpolation=cv2.INTER_AREA), frame])


def on_page(frame: np.ndarray) -> np.ndarray:
    """The frame a quarter of the width of a 1440x810 page covered in lines of dark word-like strokes (a
    screenshot)."""
    rng = np.random.default_rng(0)
    page = np.full((810, 1440, 3), 245, np.uint8)
    for top in range(20, 790, 24):
        for left in range(20, 1400, 9):
            if rng.random() < 0.7:
                page[top : top + 12, left : left + 6] = rng.integers(20, 90)
    page[100 : 100 + frame.shape[0], 700 : 700 + frame.shape[1]] = frame
    return page


REPOSTS = {  # name -> (edit of a 360x288 frame, cells across the result's shorter side, degrees turned)
    "pillarboxed 16:9": (lambda f: np.pad(f, ((0, 0), (76, 76), (0, 0))), CELLS, 0),  # 512x288
    "pillarboxed 9:16": (lambda f: np.pad(f, ((176, 176), (0, 0), (0, 0))), CELLS * 360 / 288, 0),  # 360x640
    "beside another image": (beside, CELLS, 0),
    "in a page": (on_page, CELLS * 810 / 288, 0),
    "12% crop": (lambda f: f[60:160, 150:274], CELLS * 100 / 288, 0),  # 124x100 of 360x288: 12.0% of the area
    "turned 2 degrees": (lambda f: turned(f, 2), CELLS, 2),
    "turned 3 degrees": (lambda f: turned(f, 3), CELLS, 3),
    "turned 5 degrees": (lambda f: turned(f, 5), CELLS, 5),
}


@pytest.mark.parametrize("repost", list(REPOSTS))
def test_mark_survives_reposts_through_the_search(tmp_path, marked, repost):
    edit, cells, degrees = REPOSTS[repost]
    path = tmp_path / "repost.mp4"
    write_h264(path, [np.ascontiguousarray(edit(f)) for f in marked[:4]], crf=23)
    found = Watermark().detect(list(iter_video(path)), search=True)
    match = found.search
    assert found.present and match.score >= SEARCH_THRESHOLD, found
    # the grid it found (z is flat within about 0.5 degree of the turn)
    assert abs(match.cells / cells - 1) < 0.03 and abs(match.angle - degrees) <= 1, match


def test_marks_of_the_earlier_48_cell_grid_are_found_by_the_search(tmp_path, monkeypatch, frames):
    """Outputs written with 48 cells across (before the grid became CELLS) are still recognised."""
    monkeypatch.setattr(provenance, "CELLS", 48)
    old = [Watermark().embed(f) for f in frames[:4]]
    monkeypatch.undo()
    path = tmp_path / "old.mp4"
    write_h264(path, old, crf=23)
    found = Watermark().detect(list(iter_video(path)))
    assert found.score < THRESHOLD and found.present and abs(found.search.cells / 48 - 1) < 0.03, found


def test_search_is_silent_on_unmarked_images(frames):
    images = {"frame": frames[0], "photo": load_image(FACE), "frame in a page": on_page(frames[0]),
              "frame turned 3 degrees": turned(frames[0], 3)}
    for name, image in images.items():
        found = Watermark().detect([image], search=True)
        assert not found.present and found.search.score < SEARCH_THRESHOLD - 1, (name, found.search)  # well below


def test_verify_levels_and_exit_statuses(tmp_path, capsys, monkeypatch, frames, marked):
    """Trusted signer 0, claims (untrusted manifest, tag only) 3, no mark 1, edited after signing 4;
    a trust list from --trust or MARIONETTE_TRUSTED_CERTS; several files: the least trusted."""
    from marionette.cli import main

    image = frames[0]  # (288, 360, 3): the watermark's cells survive JPEG at this size
    trusted, untrusted, tampered = tmp_path / "trusted.jpg", tmp_path / "untrusted.jpg", tmp_path / "tampered.jpg"
    tag_only, plain = tmp_path / "tag_only.png", tmp_path / "plain.png"
    save_marked_image(trusted, image, "warp", quality=90)  # this machine's local certificate, whose root is trusted here
    other = tmp_path / "other"  # someone else's certificate, e.g. one made to forge a manifest naming marionette
    other.mkdir()
    for name, pem in _generate_local().items():
        (other / name).write_bytes(pem)
    with monkeypatch.context() as env:
        env.setenv(CERT_ENV, str(other / "signer.pem"))
        env.setenv(KEY_ENV, str(other / "signer.key"))
        save_marked_image(untrusted, image, "warp", quality=90)
    data = bytearray(trusted.read_bytes())
    data[-300] ^= 0x5A  # a pixel byte changed after signing
    tampered.write_bytes(bytes(data))
    Image.fromarray(image).save(tag_only, pnginfo=png_info(container_tags("warp")))  # a forged tag, no mark
    Image.fromarray(image).save(plain)

    expected = {trusted: (Level.TRUSTED, "signed by a trusted signer"),
                untrusted: (Level.CLAIMS, "an untrusted C2PA manifest, the container tag, the watermark"),
                tampered: (Level.EDITED, "EDITED AFTER SIGNING"),
                tag_only: (Level.CLAIMS, "(the container tag): unverified, anyone can forge these marks"),
                plain: (Level.UNMARKED, "does not show the file is real")}
    for path, (level, words) in expected.items():
        assert main(["verify", str(path)]) == level.value, path
        out = capsys.readouterr().out
        assert out.startswith(f"{path}: ") and words in out.splitlines()[0], out
    assert [level.value for level in Level] == [0, 3, 1, 4]  # the exit statuses, least alarming first

    assert main(["verify", "--json", *map(str, expected)]) == 4  # several files: the least trusted
    assert [r["level"] for r in json.loads(capsys.readouterr().out)] == ["trusted", "claims", "edited", "claims", "unmarked"]
    assert main(["verify", str(trusted), str(tag_only)]) == 3
    assert main(["verify", str(trusted), str(tag_only), str(plain)]) == 1

    # the other signer is trusted once its root is on the user's trust list
    assert main(["verify", "--trust", str(other / "root.pem"), str(untrusted)]) == 0
    monkeypatch.setenv(TRUST_ENV, str(other / "root.pem"))
    assert main(["verify", str(untrusted)]) == 0
    assert "its root is on the trust list" in capsys.readouterr().out
    assert main(["verify", "--trust", str(plain), str(untrusted)]) == 2  # not a PEM bundle: refused, named
    assert capsys.readouterr().err.strip().splitlines() == [
        f"marionette: error: {plain}: not a PEM bundle of certificates (a trust list names root certificates, "
        "-----BEGIN CERTIFICATE-----)"]


def test_a_deployment_watermark_key_replaces_the_public_one(monkeypatch, frames):
    image = frames[0][::2, ::2].copy()  # (144, 180, 3)
    public = Watermark(key=DEFAULT_KEY).embed(image)
    monkeypatch.setenv(WATERMARK_KEY_ENV, "a deployment's secret")
    secret = Watermark().embed(image)
    found = Watermark().detect([secret])
    assert found.present and not found.public_key, found
    assert not Watermark().detect([public]).present  # a publicly made mark does not pass for the deployment's
    monkeypatch.delenv(WATERMARK_KEY_ENV)
    seen = Watermark().detect([secret])
    assert not seen.present and seen.public_key, seen  # the public key does not see the deployment's mark
    assert Watermark().detect([public]).present
