"""`marionette preprocess SRC_DIR OUT_DIR`: talking-head videos -> a dataset of face crops.

Per clip: decode (PyAV), track the face mesh over every frame (video mode; MESH_BATCH frames a
call, the torch backend on `device` detecting them in one batch), compute steady crops, keep up
to `max_frames` evenly spaced frames with their 68- and 478-point 3D landmarks, pose and crop
boxes (see store.py). Clips are processed by parallel workers; each finished clip is one
atomic file, so a rerun skips finished clips and kill -9 loses only the clips in flight. Bad input
is skipped and listed with its reason in `failures.jsonl`.

A large tree is preprocessed as a job array: `shard=(I, N)` takes only every N-th clip (in path
order) from the I-th on. Shards may write into one folder or into separate ones whose `clips/`
folders are copied together afterwards; the manifest is rebuilt from the clip files each time, so
a final run over the merged folder (nothing left to do) writes the manifest of the whole.
"""

from __future__ import annotations

import ctypes
import functools
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from marionette.data.config import PreprocessConfig
from marionette.data.manifest import Manifest, build_manifest, clip_path, split_identities
from marionette.data.store import ClipInfo, encode_jpeg, write_clip
from marionette.errors import InputError
from marionette.landmarks.crop import CropBox, crop_image, smooth_boxes
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.mesh import FaceMesh, frame_chunks, mesh_placement
from marionette.landmarks.pose import head_pose
from marionette.media import IMAGE_EXTS, VIDEO_EXTS, iter_frames, list_image_sequence, probe_video, sweep_temporaries
from marionette.outputs import check_work_folder

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


@dataclass(frozen=True)
class ClipJob:
    source: Path  # video file or image-sequence folder
    clip_id: str  # its path under the source root, without extension
    identity: str


@dataclass(frozen=True)
class ClipResult:
    clip_id: str
    source_frames: int  # frames decoded
    kept: int  # frames stored (0 on failure)
    error: str | None  # reason the clip was skipped


def find_clips(src: Path, identity_level: int) -> list[ClipJob]:
    """Videos (by extension) and image-sequence folders under `src`, in path order. The identity is
    path component `identity_level` of the clip's path under `src` (the clip's own name when the
    path is shorter: a flat folder of videos gives one identity per file)."""
    jobs = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        names = sorted(f for f in filenames if not f.startswith("."))
        sources = [here / f for f in names if Path(f).suffix.lower() in VIDEO_EXTS]
        if here != src and any(Path(f).suffix.lower() in IMAGE_EXTS for f in names):
            sources.append(here)  # a folder of frames is one clip
        for source in sources:
            parts = source.relative_to(src).with_suffix("").parts if source.is_file() else source.relative_to(src).parts
            identity = parts[min(identity_level, len(parts) - 1)]
            jobs.append(ClipJob(source, "/".join(parts), identity))
    return sorted(jobs, key=lambda j: j.clip_id)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """k indices spread evenly over range(n) (all of them when n <= k)."""
    if n <= k:
        return np.arange(n)
    return np.round(np.linspace(0, n - 1, k)).astype(np.int64)


def process_clip(job: ClipJob, src_root: Path, out_root: Path, config: PreprocessConfig,
                 backend: str | None = None, device: str = "cpu") -> ClipResult:
    """Track (the face mesh's `backend` on `device`, as `mesh_placement` resolved them), crop and
    store one clip. Bad input becomes a ClipResult with an error, never a raise."""
    try:
        return _process_clip(job, src_root, out_root, config, backend, device)
    except InputError as e:
        return ClipResult(job.clip_id, 0, 0, str(e))


def _process_clip(job: ClipJob, src_root: Path, out_root: Path, config: PreprocessConfig,
                  backend: str | None, device: str) -> ClipResult:
    info = probe_video(job.source) if job.source.is_file() else None
    n_reported = info.frames if info else len(list_image_sequence(job.source))
    wanted = set(evenly_spaced(n_reported, config.max_frames).tolist()) if n_reported else None
    meshes: list[np.ndarray | None] = []
    kept: dict[int, np.ndarray] = {}  # frame index -> frame, only frames we may store
    shape = (0, 0)
    with FaceMesh(video=True, max_faces=config.max_faces, backend=backend, device=device) as tracker:
        for chunk in frame_chunks(iter_frames(job.source)):
            shape = chunk[0].shape[:2]
            for frame, faces in zip(chunk, tracker.detect_batch(np.stack(chunk))):  # (B, H, W, 3) frames
                t = len(meshes)
                meshes.append(faces[0].mesh if faces and faces[0].width >= config.min_face else None)
                if wanted is None or t in wanted:
                    kept[t] = frame
    n = len(meshes)
    if n == 0:
        return ClipResult(job.clip_id, 0, 0, f"{job.source}: empty video (no frames decoded)")
    if n < config.min_decoded_fraction * n_reported:
        return ClipResult(job.clip_id, n, 0, f"{job.source}: truncated video (decoded {n} of {n_reported} frames)")
    valid = np.array([m is not None for m in meshes])
    if valid.mean() < config.min_face_fraction:
        return ClipResult(job.clip_id, n, 0, f"{job.source}: no face (min width {config.min_face} px) "
                          f"in {100 * (1 - valid.mean()):.0f}% of {n} frames")
    raw = np.zeros((n, 3), np.float32)
    crop = config.crop
    for t in np.flatnonzero(valid):
        raw[t] = crop.box(meshes[t]).as_array()
    boxes = smooth_boxes(raw, valid, config.smooth_sigma)
    candidates = sorted(t for t in kept if valid[t])
    chosen = [candidates[i] for i in evenly_spaced(len(candidates), config.max_frames)]
    jpegs, mesh_crop = [], []
    for t in chosen:
        box = CropBox(*boxes[t].tolist())
        jpegs.append(encode_jpeg(crop_image(kept[t], box, config.size), config.jpeg_quality))
        mesh_crop.append(box.to_crop(meshes[t], config.size))
    mesh_arr = np.stack(mesh_crop).astype(np.float32)  # (F, 478, 3)
    ibug = mesh_to_ibug68(mesh_arr)  # (F, 68, 3)
    clip = ClipInfo(job.clip_id, job.identity, job.source.relative_to(src_root).as_posix(), len(chosen),
                    config.size, info.fps if info else 0.0, n, int(shape[1]), int(shape[0]))
    arrays = {
        "frame_index": np.array(chosen, np.int64),
        "mesh": mesh_arr,
        "ibug68": np.ascontiguousarray(ibug),
        "pose": head_pose(ibug),
        "boxes": boxes[chosen],
    }
    write_clip(clip_path(out_root, job.clip_id), clip, jpegs, arrays)
    return ClipResult(job.clip_id, n, len(chosen), None)


def _worker_init(parent: int) -> None:
    import cv2

    if sys.platform.startswith("linux"):  # a worker dies with its parent, even a parent killed with -9
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the call
            os._exit(1)
    cv2.setNumThreads(1)
    # Workers report through their results; MediaPipe's C++ threads log start-up chatter to fd 2.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _run_job(job: ClipJob, src_root: Path, out_root: Path, config: PreprocessConfig, backend: str,
             device: str) -> ClipResult:
    """`process_clip`, in a worker or not (the pool maps a partial of it over the jobs)."""
    args = (job, src_root, out_root, config, backend, device)
    if backend == "mediapipe":
        return process_clip(*args)
    # the torch face mesh's last digits depend on torch's thread count (0.007 px between 1 and 2 threads):
    # every clip is landmarked on one thread, in a worker or not, so that shards made anywhere are the same bytes
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return process_clip(*args)
    finally:
        torch.set_num_threads(threads)


def _read_failures(path: Path) -> dict[str, str]:
    """clip_id -> reason, tolerating a torn last line from a killed run."""
    failures = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                failures[record["clip_id"]] = record["reason"]
            except (json.JSONDecodeError, KeyError):
                continue
    return failures


def preprocess(src: Path, out: Path, config: PreprocessConfig, workers: int = 2, retry_failed: bool = False,
               progress: bool = True, shard: tuple[int, int] = (0, 1), device: str = "auto"
               ) -> tuple[Manifest, dict[str, str]]:
    """Build (or resume building) a dataset from the clips of shard `shard` = (I, N) (every N-th
    clip from the I-th; (0, 1) = all); returns the manifest of every clip in `out` and the failures
    (clip -> reason). `device`: where the face mesh runs, a device setting (auto: cuda, else mps,
    else cpu; `mesh_placement`), resolved once, each worker building its own mesh there; not in
    the manifest (landmarks tracked on two devices differ by float rounding only)."""
    src, out = Path(src), Path(out)
    index, count = shard
    if not 0 <= index < count:
        raise InputError(f"--shard {index}/{count}: needs 0 <= I < N")
    if not src.is_dir():
        raise InputError(f"{src}: not a folder")
    backend, where = mesh_placement(device=device)
    split_identities([], config)  # a bad split file fails now, not after the clips are processed
    check_work_folder(out, [src], ("manifest.json", "clips", "failures.jsonl"), "dataset")
    if (out / "manifest.json").is_file() and Manifest.load(out).config != config:
        raise InputError(f"{out}: dataset was built with other settings (see its manifest.json); use a new folder")
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "clips").rglob(".*.safetensors") if (out / "clips").is_dir() else ():
        stale.unlink()  # temp files of clips that were in flight when a run was killed
    sweep_temporaries(out / "manifest.json")  # and of a manifest being written
    failures_path = out / "failures.jsonl"
    failures = {} if retry_failed else _read_failures(failures_path)
    if retry_failed and failures_path.exists():
        failures_path.unlink()
    jobs = find_clips(src, config.identity_level)
    if not jobs:
        raise InputError(f"{src}: no videos ({', '.join(VIDEO_EXTS)}) or image-sequence folders found")
    todo = [j for j in jobs[index::count] if j.clip_id not in failures and not clip_path(out, j.clip_id).is_file()]
    frames, start = 0, time.perf_counter()
    bar = tqdm(total=len(todo), unit="clip", desc="preprocess", disable=not progress or not todo)
    run = functools.partial(_run_job, src_root=src, out_root=out, config=config, backend=backend, device=where)
    pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(os.getpid(),)) if workers > 1 and len(todo) > 1 else None
    try:
        results = pool.imap_unordered(run, todo) if pool else map(run, todo)
        with failures_path.open("a") as log:
            for result in results:
                frames += result.source_frames
                if result.error:
                    failures[result.clip_id] = result.error
                    log.write(json.dumps({"clip_id": result.clip_id, "reason": result.error}) + "\n")
                    log.flush()
                    os.fsync(log.fileno())
                bar.set_postfix(fps=f"{frames / (time.perf_counter() - start):.0f}", failed=len(failures))
                bar.update()
    finally:
        bar.close()
        if pool:
            pool.terminate()
    manifest = build_manifest(out, config)
    return manifest, failures
