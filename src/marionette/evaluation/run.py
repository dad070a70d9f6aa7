"""`marionette evaluate`: score renderers on deterministic episodes of a dataset split.

Per episode: read the targets and the driver from the dataset; for each renderer, drive and render
through the ReenactPipeline `marionette reenact` runs (its per-frame call, `render_frames`: targets
from the stored crops and meshes, the driver clip's stored meshes driven, the crop rendered; no paste-back),
find the face mesh of the result (still-image mode) and measure every registered metric of the
episode's mode. One JSON line per (renderer, shots, mode, episode) is appended to
REPORT_DIR/results.jsonl as soon as it is done, so a rerun skips finished ones; the report
(markdown, JSON, plots, sample grids) is rebuilt from that file at the end of every run.

Videos (`videos`, ours): every episode is also rendered over its whole driver clip, frame by
frame in order (the same driving, from the clip's reference face), for the temporal metrics; the
frame metrics then score the video's frame at the driver frame (the frame a viewer sees, after
those before it: the warp's target blending carries over frames), as for an external video; the
kept episodes get an mp4 video wall (samples/<mode>_k<K>_e<i>_wall.mp4: driver | each renderer,
marked synthetic; in self mode the driver clip is the ground truth).

Other methods (external.py): `inputs` writes every episode's targets and driver for another tool;
`external` scores the videos it made for those episodes as one more renderer, with the same
metrics, in the same table.

Driving (ours): self mode draws the driver's own landmarks as they are (no landmark transformer,
absolute: the driver frame's mesh in its crop is the ground-truth geometry, so a perfect renderer
reproduces the ground truth pixel for pixel). Cross mode runs the landmark transformer in
`cross_mode` (default relative, the product default: the driver's motion from its reference face,
found over its whole clip as `reenact` finds it over a file's first seconds, applied to the
targets' face). Every renderer gets the same driven landmarks.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from marionette.config import to_dict
from marionette.data.config import PreprocessConfig
from marionette.data.manifest import Manifest, clip_path
from marionette.data.store import ClipInfo, ClipReader, read_info
from marionette.devices import placement
from marionette.errors import InputError
from marionette.evaluation.calibration import FRAMES_PER_CLIP, Reference, embed_dataset, references, separation
from marionette.evaluation.config import MODES, EvalConfig
from marionette.evaluation.episodes import EvalEpisode, load_episodes, make_episodes, save_episodes
from marionette.evaluation.expression import ExpressionConfig
from marionette.evaluation.external import external_folders, external_video, load_external, write_inputs
from marionette.evaluation.metrics import REGISTRY, TEMPORAL, Sample, Tools, measure_sample, metrics_for
from marionette.evaluation.report import write_report, write_video_wall
from marionette.inference.config import RENDERERS, ReenactConfig
from marionette.inference.pipeline import ReenactPipeline, TrackedDriver
from marionette.landmarks.measures import hard_frames
from marionette.landmarks.mesh import FaceMesh
from marionette.media import atomic_path, save_image
from marionette.outputs import check_work_folder
from marionette.provenance import save_marked_image

RESULTS = "results.jsonl"
EPISODES = "episodes.csv"
SETTINGS = "settings.json"
CALIBRATION = "calibration.json"
INPUTS = "inputs"


class EpisodeData:
    """Clip readers and meshes of the dataset, loaded once per clip."""

    def __init__(self, root: Path):
        self.root = root
        self._readers: dict[str, tuple[ClipReader, np.ndarray]] = {}

    def info(self, clip_id: str) -> ClipInfo:
        return read_info(clip_path(self.root, clip_id))

    def clip(self, clip_id: str) -> tuple[ClipReader, np.ndarray]:
        if clip_id not in self._readers:
            reader = ClipReader(clip_path(self.root, clip_id))
            self._readers[clip_id] = (reader, reader.mesh())  # mesh (F, 478, 3)
        return self._readers[clip_id]


def _check_settings(out: Path, settings: dict) -> None:
    """A report folder holds results of one setting; a rerun with another is an error."""
    path = out / SETTINGS
    if path.is_file():
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            raise InputError(f"{out}: made with other settings ({', '.join(changed)}); use a new report folder")


def _episodes(clips: EpisodeData, out: Path, manifest: Manifest, config: EvalConfig, episodes_csv: Path | None
              ) -> tuple[list[EvalEpisode], list[EvalEpisode]]:
    """The folder's episode list (to save) and the episodes of `config`'s modes and shots."""
    path = out / EPISODES
    if episodes_csv is not None:
        episodes = load_episodes(episodes_csv)
    elif path.is_file():
        episodes = load_episodes(path)
    else:
        hard = (lambda clip_id: hard_frames(clips.clip(clip_id)[1])) if config.drivers == "hard" else None
        episodes = make_episodes(manifest, config.split, config.modes, config.shots, config.episodes, config.seed, hard)
    known = {c.info.clip_id for c in manifest.clips}
    unknown = sorted({c for e in episodes for c in (e.target_clip, e.driver_clip)} - known)
    if unknown:
        raise InputError(f"episode list names clips not in the dataset: {', '.join(unknown[:3])}")
    missing = sorted({(m, k) for m in config.modes for k in config.shots} - {(e.mode, e.shots) for e in episodes})
    if missing:
        raise InputError(f"episode list has no {missing[0][0]} episodes with {missing[0][1]} shots")
    return episodes, [e for e in episodes if e.mode in config.modes and e.shots in config.shots]


def _calibration(out: Path, data: Path, manifest: Manifest, tools: Tools) -> dict[str, Reference]:
    """The identity references of the dataset (calibration.py), computed once per report folder
    and kept in CALIBRATION with how well the score separates the dataset's people."""
    path = out / CALIBRATION
    if not path.is_file():
        found = embed_dataset(data, manifest, tools.embedding)
        try:
            measured = asdict(separation(found))
        except InputError as error:  # too few identities or frames: the references still serve
            measured = {"not_measured": str(error)}
        refs = {identity: asdict(ref) for identity, ref in references(found).items()}
        record = {"frames_per_clip": FRAMES_PER_CLIP, "frames_embedded": len(found), "separation": measured,
                  "references": refs}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")
    return {identity: Reference(**ref) for identity, ref in json.loads(path.read_text())["references"].items()}


def _done(path: Path) -> set[tuple[str, int, str, int]]:
    """Keys of the finished lines of results.jsonl (a line cut short by a kill is ignored)."""
    done = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
                done.add((r["renderer"], r["shots"], r["mode"], r["episode"]))
            except (json.JSONDecodeError, KeyError):
                continue
    return done


def _pipelines(config: EvalConfig, crops: PreprocessConfig) -> dict[tuple[str, str], ReenactPipeline]:
    """The ReenactPipeline `reenact` would run for each renderer and mode: self episodes drive with
    the driver's own landmarks as they are (no landmark transformer, absolute: the driver frame's
    mesh is the ground truth's geometry); cross episodes with the landmark transformer in
    `cross_mode`. A generator is scored only on crops made as its training crops were, each frame
    drawn in a generator call of its own (batch=1, generator_every=1: a frame's pixels do not depend on the frame
    beside it)."""
    pipelines = {}
    # resolved once: an absent device is said once, not once per pipeline
    placed = any(RENDERERS[name].placed for name in config.renderers)
    place = placement(config.device, config.precision).settings() if placed else {}
    for name in config.renderers:
        for mode in config.modes:
            drive = dict(transform=False, mode="absolute", mouth="drawn") if mode == "self" else dict(
                mode=config.cross_mode, alpha=config.alpha, expression=config.cross_expression, mouth=config.cross_mouth)
            settings = ReenactConfig(renderer=name, size=crops.size, paste_back=False, batch=1, generator_every=1,
                                     **drive, **place)  # an episode's frames are not consecutive: each its own
            pipeline = ReenactPipeline(settings, checkpoint=config.checkpoint if RENDERERS[name].checkpoint else None,
                                       landmark_transformer=config.landmark_transformer)
            trained = pipeline.crop
            if trained != crops.crop:
                raise InputError(f"{config.checkpoint or 'the shipped generator'}: trained on crops of crop_scale={trained.scale}, "
                                 f"crop_shift={trained.shift}, but the dataset's are {crops.crop_scale}, "
                                 f"{crops.crop_shift}; preprocess it with those settings")
            pipelines[name, mode] = pipeline
    return pipelines


def evaluate(data: Path, out: Path, config: EvalConfig, expression: ExpressionConfig = ExpressionConfig(),
             episodes_csv: Path | None = None, progress: bool = True) -> Path:
    """Run (or resume) an evaluation into `out`; returns the markdown report's path. The folders
    this run creates are removed again if it fails before its first result: a failed evaluation
    leaves nothing behind."""
    check_work_folder(out, [data], (RESULTS, EPISODES, SETTINGS), "evaluation report")
    manifest = Manifest.load(data)
    pipelines = _pipelines(config, manifest.config)  # (renderer, mode) -> the pipeline `reenact` would run
    folders = external_folders(config.external)  # external renderer -> its folder of videos
    tools = Tools(config.arcface, expression)
    new = next((p for p in reversed((out, *out.absolute().parents)) if not p.exists()), None)  # the top one made now
    out.mkdir(parents=True, exist_ok=True)
    try:
        _evaluate(data, out, config, manifest, pipelines, folders, tools, episodes_csv, progress)
    except BaseException:
        if new is not None and not _done(out / RESULTS):  # nothing measured: leave nothing behind
            shutil.rmtree(new, ignore_errors=True)
        raise
    omitted = sorted({reason for m in metrics_for("self") + metrics_for("cross") if (reason := m.missing())})
    return write_report(out, omitted)


def _evaluate(data: Path, out: Path, config: EvalConfig, manifest: Manifest,
              pipelines: dict[tuple[str, str], ReenactPipeline], folders: dict[str, Path], tools: Tools,
              episodes_csv: Path | None, progress: bool) -> None:
    """Check the folder's settings, the episodes and the external videos, then write the settings
    and the episode list and run."""
    settings = {"dataset": str(Path(data).resolve()), "split": config.split, "seed": config.seed,
                "cross_mode": config.cross_mode, "cross_expression": config.cross_expression,
                "cross_mouth": config.cross_mouth, "alpha": config.alpha,
                "expression": to_dict(tools.expression_config),
                "judge": tools.judge.name, **({"videos": True} if config.videos else {}),
                **({"drivers": config.drivers} if config.drivers != "uniform" else {})}
    half = {p.renderer.placement.precision for p in pipelines.values() if p.renderer.placement is not None} - {"fp32"}
    if half:  # half precision changes the neural renderer's pixels: no mixing in one report
        settings["precision"] = half.pop()
    _check_settings(out, settings)
    clips = EpisodeData(Path(data))
    listed, episodes = _episodes(clips, out, manifest, config, episodes_csv)
    done = _done(out / RESULTS)
    renderers = (*config.renderers, *folders)
    todo = [e for e in episodes if any((r, e.shots, e.mode, e.episode) not in done for r in renderers)]
    videos = {(name, e.name): external_video(folder, e) for e in todo for name, folder in folders.items()
              if (name, e.shots, e.mode, e.episode) not in done}  # checked now: none missing midway
    with atomic_path(out / SETTINGS) as tmp:
        tmp.write_text(json.dumps(settings, indent=1) + "\n")
    save_episodes(out / EPISODES, listed)
    _run(clips, out, config, manifest, pipelines, tools, renderers, episodes, todo, done, videos, progress)


def _run(clips: EpisodeData, out: Path, config: EvalConfig, manifest: Manifest, pipelines: dict[tuple[str, str], ReenactPipeline],
         tools: Tools, renderers: tuple[str, ...], episodes: list[EvalEpisode], todo: list[EvalEpisode],
         done: set[tuple[str, int, str, int]], videos: dict[tuple[str, str], Path], progress: bool) -> None:
    """Write the inputs (inputs=true) and the calibration, and measure every `todo` episode with
    every renderer (ours, then the external ones, whose video files are `videos`)."""
    size = manifest.config.size
    if config.inputs:
        for episode in episodes:
            target_reader, _ = clips.clip(episode.target_clip)
            driver_reader, driver_mesh = clips.clip(episode.driver_clip)
            write_inputs(out / INPUTS, episode, target_reader.images(list(episode.target_frames)),
                         driver_reader.images(list(range(len(driver_mesh)))), clips.info(episode.driver_clip))
    (out / "samples").mkdir(exist_ok=True)
    identity_references = _calibration(out, clips.root, manifest, tools)
    identity_of = {c.info.clip_id: c.info.identity for c in manifest.clips}
    results = out / RESULTS
    wanted = [m for m in REGISTRY.values() if m.missing() is None and (config.videos or m.name not in TEMPORAL)]
    metrics = {mode: [m.name for m in wanted if mode in m.modes] for mode in MODES}
    bar = tqdm(total=sum(len(renderers) for _ in todo), unit="render", desc="evaluate", disable=not progress)
    if results.is_file() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        # a kill cut the last line short
        with open(results, "a") as log:
            log.write("\n")  # end it, so the next record starts a line of its own (the cut one is ignored)
    with FaceMesh(video=False, max_faces=1) as face_mesh, open(results, "a") as log:
        for episode in todo:
            target_reader, target_mesh = clips.clip(episode.target_clip)
            driver_reader, driver_mesh = clips.clip(episode.driver_clip)
            frames = list(episode.target_frames)
            crops, meshes = target_reader.images(frames), target_mesh[frames]  # (K, S, S, 3), (K, 478, 3)
            driver_image = driver_reader.images([episode.driver_frame])[0]  # (S, S, 3)
            self_mode = episode.mode == "self"
            driver_video = driver_reader.images(list(range(len(driver_mesh)))) if config.videos else None  # (F, S, S, 3)
            # the whole clip drawn (videos), or its driver frame alone; its reference face from the whole clip either
            # way; in cross episodes with their crops, for the driver's teeth (in self episodes they are the truth's)
            drawn_frames = driver_video if config.videos else driver_image[None]
            driver = TrackedDriver(driver_mesh, range(len(driver_mesh)) if config.videos else (episode.driver_frame,),
                                   frames=None if self_mode else drawn_frames)
            at = episode.driver_frame if config.videos else 0  # the driver frame among those drawn
            # one driving for every renderer, other methods' too: the first one's pipeline's
            first = pipelines[config.renderers[0], episode.mode]
            first.set_target_crops(crops, meshes)
            driven_frames = first.drive(driver)  # (F, 478, 3) or (1, 478, 3)
            driven, driven_video = driven_frames[at], (driven_frames if config.videos else None)  # (478, 3), (F, 478, 3)
            prefix = episode.name
            keep = episode.episode < config.samples
            wall: dict[str, np.ndarray] = {}  # renderer -> its video (kept episodes)
            if keep:
                save_image(out / "samples" / f"{prefix}_target.jpg", crops[0], quality=90)
                save_image(out / "samples" / f"{prefix}_driver.jpg", driver_image, quality=90)
            for name in renderers:
                if (name, episode.shots, episode.mode, episode.episode) in done:
                    continue
                video_meshes = None
                if name in config.renderers:
                    pipeline = pipelines[name, episode.mode]
                    pipeline.set_target_crops(crops, meshes)  # each crop its own photo, its mesh as stored
                    drawn = np.stack([r.output for r in pipeline.render_frames(driver)])  # (F, S, S, 3) or (1, S, S, 3)
                    output = drawn[at]
                else:  # another method's video of the episode
                    drawn = load_external(videos[name, prefix], len(driver_mesh), size)  # (F, S, S, 3)
                    output = drawn[episode.driver_frame]
                video = drawn if config.videos else None
                faces = face_mesh.detect(output)
                if video is not None:
                    video_meshes = tuple(f[0].mesh if (f := face_mesh.detect(frame)) else None for frame in video)
                sample = Sample(
                    mode=episode.mode, output=output,
                    truth=driver_image if self_mode else None,
                    truth_mesh=driver_mesh[episode.driver_frame] if self_mode else None,
                    targets=crops, target_meshes=meshes,
                    driver_mesh=driver_mesh[episode.driver_frame], driver_clip_meshes=driver_mesh,
                    driven_mesh=driven, output_mesh=faces[0].mesh if faces else None,
                    truth_key=f"{episode.driver_clip}#{episode.driver_frame}",
                    target_keys=tuple(f"{episode.target_clip}#{f}" for f in frames),
                    identity_reference=identity_references.get(identity_of[episode.target_clip]),
                    output_frames=video, output_frame_meshes=video_meshes or (), driven_frame_meshes=driven_video,
                    truth_frames=driver_video if self_mode else None, target_positions=episode.target_frames,
                )
                values = measure_sample(sample, metrics[episode.mode], tools)
                record = {"renderer": name, "shots": episode.shots, "mode": episode.mode,
                          "episode": episode.episode, "metrics": values}
                log.write(json.dumps(record) + "\n")
                log.flush()
                if keep:
                    save_marked_image(out / "samples" / f"{prefix}_{name}.jpg", output, name, quality=90)
                    if video is not None:
                        wall[name] = video
                bar.update()
            if wall and len(wall) == len(renderers):  # every renderer ran now (a resumed episode gets none)
                info = clips.info(episode.driver_clip)
                write_video_wall(out / "samples" / f"{prefix}_wall.mp4",
                                 [("driver = truth" if self_mode else "driver", driver_video, False)]
                                 + [(name, frames, True) for name, frames in wall.items()], info)
    bar.close()
