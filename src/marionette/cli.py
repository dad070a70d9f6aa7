"""The `marionette` command line: thin entry points over the library, and `COMMANDS`, the table of
commands (each one's help, handler, arguments as data and the settings class that `--set` overrides)
from which `build_parser` builds the parser. At the top it imports only settings (no torch, no
mediapipe), so that `--help` and a bad argument answer at once; each command imports what it runs
when it runs."""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from marionette import __version__
from marionette.app import AppConfig
from marionette.config import describe, override
from marionette.data.config import EpisodeConfig, PreprocessConfig
from marionette.errors import InputError, os_error
from marionette.evaluation.config import EvalConfig
from marionette.evaluation.expression import ExpressionConfig
from marionette.inference.config import DEVICE_RULE, OnnxExportConfig, ReenactConfig
from marionette.landmark_transformer.config import LandmarkTransformerConfig
from marionette.model.config import LossConfig, ModelConfig
from marionette.training.config import TRAIN_PRESETS, BenchTrainConfig, TrainConfig


def _landmarks(args: argparse.Namespace) -> None:
    from marionette.landmarks.preview import landmark_report
    from marionette.outputs import check_file_output

    if args.out:
        check_file_output(args.out, [args.image], args.overwrite)
    report = landmark_report(Path(args.image), face_index=args.face, size=args.size, preview=args.out)
    if args.json:
        print(json.dumps(report))
    else:
        for face in report["faces"]:
            yaw, pitch, roll = (face["pose"][k] for k in ("yaw", "pitch", "roll"))
            chosen = " (chosen)" if face["face"] == report["face"] and len(report["faces"]) > 1 else ""
            print(f"{args.image}: face {face['face']}{chosen}: {face['face_width']:.0f} px wide at x "
                  f"{face['box'][0]:.0f}; yaw {yaw:.1f}, pitch {pitch:.1f}, roll {roll:.1f} deg")
        if args.out:
            print(f"preview of face {report['face']} written to {args.out}")


def _preprocess(args: argparse.Namespace) -> None:
    from marionette.data.preprocess import preprocess

    config = override(PreprocessConfig(), args.set)
    manifest, failures = preprocess(Path(args.src), Path(args.out), config, workers=args.workers,
                                    retry_failed=args.retry_failed, progress=not args.quiet, shard=args.shard,
                                    device=args.device)
    splits = {s: len(manifest.split(s)) for s in ("train", "val", "test")}
    frames = sum(c.info.frames for c in manifest.clips)
    print(f"{args.out}: {len(manifest.clips)} clips, {frames} frames (train {splits['train']}, "
          f"val {splits['val']}, test {splits['test']} clips); {len(failures)} skipped")
    for clip_id, reason in sorted(failures.items()):
        print(f"  skipped {clip_id}: {reason}")


def _reenact(args: argparse.Namespace) -> None:
    from marionette.inference.pipeline import ReenactPipeline

    config = override(ReenactConfig(), args.set + (["overwrite=true"] if args.overwrite else []))
    pipeline = ReenactPipeline(config, checkpoint=args.checkpoint, landmark_transformer=args.landmark_transformer)
    if args.virtual_camera:
        from marionette.inference.io import open_driver
        from marionette.inference.virtual_camera import VirtualCamera

        source = open_driver(args.driver)
        with VirtualCamera(source.fps, args.camera_device, paced=not source.live) as camera:
            stats = pipeline.run(args.target, args.driver, args.out, progress=not args.quiet, on_frame=camera)
    else:
        stats = pipeline.run(args.target, args.driver, args.out, progress=not args.quiet)
    print(f"{args.out}: {stats.frames} frames, renderer {pipeline.renderer_name}"
          + (f"; {stats.faceless} driver frames without a face held the last landmarks" if stats.faceless else ""))
    if args.stages:
        print(stats.table())


def _app(args: argparse.Namespace) -> None:
    from marionette.app import AppConfig, serve

    config = override(AppConfig(), args.set)
    changes = {k: v for k, v in (("host", args.host), ("port", args.port), ("checkpoint", args.checkpoint)) if v is not None}
    serve(override(config, changes))


def _demo(args: argparse.Namespace) -> None:
    from marionette.inference.demo import run_demo

    for path in run_demo(Path(args.out), progress=not args.quiet):
        print(f"wrote {path}")


def _fit_landmarks(args: argparse.Namespace) -> None:
    from marionette.landmark_transformer.fit import fit_landmark_transformer
    from marionette.outputs import check_file_output

    config = override(LandmarkTransformerConfig(), args.set)
    out = Path(args.out).with_suffix(".safetensors")
    for path in (out, out.with_suffix(".json")):
        check_file_output(path, [args.dataset], args.overwrite)
    transformer = fit_landmark_transformer(Path(args.dataset), config, progress=not args.quiet)
    transformer.save(args.out)
    stats = transformer.stats
    print(f"{out} (+ .json): {stats['frames']} frames of "
          f"{stats['identities']} identities ({config.split}); {stats['components']} expression components "
          f"({100 * stats['explained_variance']:.1f}% of l_exp); fitted in {stats['seconds']:.0f} s")


def _export_onnx(args: argparse.Namespace) -> None:
    from marionette.inference.onnx_export import export_onnx
    from marionette.inference.onnx_runtime import FILES
    from marionette.outputs import check_folder_output

    config = override(OnnxExportConfig(), args.set)
    check_folder_output(args.out, [args.export], FILES, args.overwrite)
    error = export_onnx(args.export, Path(args.out), config)
    checked = f"onnxruntime within {error:.1g} of torch at K = 1 and 8" if error is not None else "not checked"
    print(f"{args.out}: {', '.join(FILES)} (K = 1..8 targets; {checked}); reenact with "
          f"--set renderer=onnx --checkpoint {args.out}")


def _verify(args: argparse.Namespace) -> int:
    """Exit status: the verdict (provenance.Level) of the least trusted file, 2 when some file or
    folder could not be read (each reported on stderr; the rest of the list is still checked)."""
    from marionette.content_credentials import trust_anchors
    from marionette.provenance import Level, format_report, verify, verify_targets

    anchors = trust_anchors(args.trust)
    results, errors, levels = [], 0, [Level.TRUSTED]
    for spec in args.files:
        try:
            paths = verify_targets(spec)
        except InputError as e:
            paths = []
            errors += 1
            print(f"marionette: error: {e}", file=sys.stderr)
            results.append({"path": str(spec), "error": str(e)})
        for path in paths:
            try:
                report = verify(path, anchors=anchors)
            except InputError as e:
                errors += 1
                print(f"marionette: error: {e}", file=sys.stderr)
                results.append({"path": str(path), "error": str(e)})
                continue
            levels.append(report.level)
            results.append(report.to_dict())
            if not args.json:
                print(format_report(report), flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 2 if errors else max(levels, key=list(Level).index).value


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _evaluate(args: argparse.Namespace) -> None:
    from marionette.evaluation.run import evaluate

    thresholds = [s.removeprefix("expression.") for s in args.set if s.startswith("expression.")]
    expression = override(ExpressionConfig(), thresholds)
    files = {"arcface": args.arcface, "checkpoint": args.checkpoint, "landmark_transformer": args.landmark_transformer}
    settings = [s for s in args.set if not s.startswith("expression.")]
    external = [s.partition("=")[2] for s in settings if "=" in s and s.partition("=")[0].strip() == "external"]
    if external:  # repeatable: every --set external=NAME:FOLDER adds one
        settings = [s for s in settings if s.partition("=")[0].strip() != "external"] + ["external=" + ",".join(external)]
    config = override(override(EvalConfig(), settings), {k: v for k, v in files.items() if v is not None})
    report = evaluate(Path(args.data), Path(args.out), config, expression,
                      episodes_csv=Path(args.episode_list) if args.episode_list else None, progress=not args.quiet)
    print(f"wrote {report} (+ report.json, plots/, samples/)")


def _bench(args: argparse.Namespace) -> None:
    from marionette import bench

    # checked first: the train benchmark's settings, or reenact's (each of its rows sets its renderer)
    train = override(BenchTrainConfig(), args.set) if args.what == "train" else None
    reenact = override(ReenactConfig(), args.set) if args.what != "train" else None
    bench.run(args.what, video=args.video, workers=args.workers, episodes=args.episodes, repeats=args.repeats,
              checkpoint=args.checkpoint, presets=_comma_list(args.presets), ks=args.ks,
              batches=args.batch, precisions=_comma_list(args.precision),
              device=args.device, rounds=args.rounds, out=Path(args.out) if args.out else None,
              reenact=reenact, train=train, data=args.data)


def _train(args: argparse.Namespace) -> None:
    from marionette.training.config import run_config

    config = run_config(args.config, args.set)
    if args.dry_run:
        print(json.dumps(config.to_dict(), indent=2))
        return
    import logging

    from marionette.training import distributed
    from marionette.training.loop import train

    logging.basicConfig(level=logging.INFO, format="marionette: %(message)s")
    try:
        result = train(Path(args.data), Path(args.run), config, progress=not args.quiet,
                       init=Path(args.init) if args.init else None)
    except BaseException:
        distributed.shutdown(wait=False)
        raise
    distributed.shutdown()
    if distributed.is_main():
        print(f"trained to step {result.step}; {args.run}/export/generator.safetensors holds the EMA generator")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line, like every other error."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments"):
            message += " (settings are given one per --set KEY=VALUE)"
        print(f"marionette: error: {self.prog.removeprefix('marionette ')}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _count(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in low..high."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{value}: must be an integer in {low}..{high}")
        return number
    return parse


def _counts(low: int, high: int) -> Callable[[str], list[int]]:
    """An argparse type: a comma list of integers in low..high."""
    def parse(value: str) -> list[int]:
        items = _comma_list(value)
        if not items:
            raise argparse.ArgumentTypeError(f"{value!r}: must be a comma list of integers in {low}..{high}")
        return [_count(low, high)(item) for item in items]
    return parse


def _device(value: str) -> str:
    """An argparse type: a device setting, as reenact's `device` takes it (DEVICE_RULE)."""
    if not DEVICE_RULE.test(value):
        raise argparse.ArgumentTypeError(f"{value}: must be {DEVICE_RULE.text}")
    return value


def _shard(value: str) -> tuple[int, int]:
    """An argparse type: I/N with 0 <= I < N."""
    index, _, count = value.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"{value}: must be I/N with integers 0 <= I < N")
    return int(index), int(count)


@dataclass(frozen=True)
class Arg:
    """One argument of a command: its flag (or a positional's name), its help, and what else
    `add_argument` takes; a field left at its default is not passed, so argparse's own applies."""

    flag: str
    help: str
    short: str | None = None  # a one-letter alias, listed before the flag
    type: Callable[[str], typing.Any] | None = None  # parses and checks the value (an argparse type)
    default: typing.Any = None
    nargs: str | None = None
    choices: tuple[str, ...] | None = None
    action: str | None = None
    metavar: str | None = None
    required: bool = False

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        # copied: each parser gets a list default of its own (a Namespace holds the parser's list)
        options = {f.name: copy.copy(getattr(self, f.name)) for f in dataclasses.fields(self)
                   if f.name not in ("flag", "help", "short") and getattr(self, f.name) != f.default}
        parser.add_argument(*filter(None, (self.short, self.flag)), help=self.help, **options)


@dataclass(frozen=True)
class Command:
    """One command: its line in `marionette --help`, its handler (which imports what it runs), its
    arguments, and the settings class that `--set KEY=VALUE` overrides, listed after the options."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int | None]
    args: tuple[Arg, ...]
    settings: type | None = None
    heading: str = "settings (--set key=value):"  # the line above the settings
    skip: tuple[str, ...] = ()  # settings given as options of their own, not listed
    notes: tuple[str, ...] = ()  # paragraphs after the settings

    def epilog(self) -> str | None:
        if self.settings is None:
            return None
        return "\n\n".join((f"{self.heading}\n{describe(self.settings, skip=self.skip)}", *self.notes))


def _set(help: str = "override one setting listed below (repeat for more)") -> Arg:
    """The repeatable `--set KEY=VALUE` option."""
    return Arg("--set", help, action="append", default=[], metavar="KEY=VALUE")


_QUIET = Arg("--quiet", "no progress bar", action="store_true")

COMMANDS: tuple[Command, ...] = (
    Command("landmarks", "show what the system sees in one image: 68 3D points, pose, crop preview", _landmarks, (
        Arg("image", "a photo, painting or illustration with a face"),
        Arg("--out", "write a preview PNG: the crop with landmarks beside the landmark image"),
        Arg("--json", "print the 68 points (x, y, z in image pixels) and pose as JSON", action="store_true"),
        Arg("--overwrite", "replace an existing preview file", action="store_true"),
        Arg("--face", "which face: -1 the largest, else numbered from 0 left to right (--json lists them all)",
            type=_count(-1, 15), default=-1),
        Arg("--size", "crop size of the preview, pixels", type=_count(32, 1024), default=PreprocessConfig.size),
    )),
    Command("preprocess", "build a dataset of face crops and 3D landmarks from a tree of videos", _preprocess, (
        Arg("src", "folder of videos (mp4, avi, mov, mkv, webm) and image-sequence folders"),
        Arg("out", "dataset folder (created; a rerun resumes)"),
        Arg("--workers", "parallel worker processes (default: 2)", type=_count(1, 256), default=2),
        Arg("--retry-failed", "retry clips listed in failures.jsonl", action="store_true"),
        Arg("--shard", "process only every N-th clip from the I-th (0-based), for job arrays; default 0/1 (all)",
            type=_shard, default=(0, 1), metavar="I/N"),
        Arg("--device", "where the face mesh runs: auto (cuda, else mps, else cpu), cpu, cuda, cuda:N, mps; "
            "mediapipe's runs on the CPU, so a GPU picks the torch mesh unless MARIONETTE_FACE_MESH=mediapipe "
            "(default: auto)", type=_device, default="auto"),
        _QUIET,
        _set(),
    ), settings=PreprocessConfig),
    Command("reenact", "animate target photo(s) with a driver video, image, folder or webcam", _reenact, (
        Arg("--target", "1..K images of the target (or a target video: frames are sampled from it)",
            nargs="+", required=True),
        Arg("--driver", "driver: video file (an animated GIF too), image, folder of images, or webcam index",
            required=True),
        Arg("--out", "output: .mp4/.mov/.mkv (H.264, the driver's audio copied), .gif, a folder for PNG frames, "
            "or .png for an image driver", short="-o", required=True),
        Arg("--checkpoint", "trained generator (inference export of `marionette train`) for the neural renderer, "
            "or its `export-onnx` folder for the onnx renderer (default: the generator shipped with marionette)"),
        Arg("--landmark-transformer", "fitted landmark transformer FILE.safetensors (from `marionette "
            "fit-landmarks`; default: the one shipped with marionette)"),
        Arg("--stages", "print time per stage (decode, landmarks, ..., encode)", action="store_true"),
        Arg("--overwrite", "replace an existing output (a file, or a folder of marionette's frames); the same as "
            "--set overwrite=true", action="store_true"),
        Arg("--virtual-camera", "also send the frames to a virtual camera at the driver's pace (pyvirtualcam: "
            'v4l2loopback on Linux, OBS on macOS/Windows; pip install "marionette[live]")', action="store_true"),
        Arg("--camera-device", "virtual camera device, e.g. /dev/video4 (default: the first free one)"),
        _QUIET,
        _set(),
    ), settings=ReenactConfig),
    Command("app", 'serve a web page and an HTTP API for reenactment (pip install "marionette[app]")', _app, (
        Arg("--host", "address to listen on (default: 127.0.0.1, this machine only)"),
        Arg("--port", "TCP port (default: 7860)", type=int),
        Arg("--checkpoint", "trained generator export (or its ONNX export folder) the neural (onnx) renderer runs "
            "(default: the shipped generator)"),
        _set(),
    ), settings=AppConfig),
    Command("demo", "reenact the bundled sample portrait with a bundled clip", _demo, (
        Arg("--out", "folder for the result and the side-by-side video", default="out/demo"),
        _QUIET,
    )),
    Command("fit-landmarks", "fit the landmark transformer (expression basis, disentangler) on a dataset's landmarks",
            _fit_landmarks, (
        Arg("dataset", "dataset folder made by `marionette preprocess`"),
        Arg("--out", "output FILE.safetensors (FILE.json is written beside it)", required=True),
        Arg("--overwrite", "replace an existing FILE.safetensors and FILE.json", action="store_true"),
        _QUIET,
        _set(),
    ), settings=LandmarkTransformerConfig),
    Command("export-onnx", "write a trained generator as ONNX for the onnx renderer (pip install 'marionette[onnx]')",
            _export_onnx, (
        Arg("export", "inference export of `marionette train` (RUN/export/generator.safetensors)"),
        Arg("--out", "folder to write (new or empty): target_encoder.onnx, frame_generator.onnx, model.json",
            required=True),
        Arg("--overwrite", "replace an earlier ONNX export in that folder", action="store_true"),
        _set(),
    ), settings=OnnxExportConfig),
    Command("verify", "check files for marionette's C2PA manifest, synthetic-media tag and invisible watermark",
            _verify, (
        Arg("files", "videos or images to check; a folder: every image and video in it (recursively). Exit status, "
            "of the least trusted file: 0 signed by a trusted signer, 3 claims marionette (a tag, an untrusted "
            "manifest or the watermark: forgeable), 1 no mark, 4 edited after signing (a manifest that fails "
            "validation); 2 some file unreadable", nargs="+"),
        Arg("--trust", "a PEM bundle of root certificates whose signers are trusted (repeat for more; also "
            "$MARIONETTE_TRUSTED_CERTS, and this machine's local root)", action="append", default=[], metavar="PEM"),
        Arg("--json", "print one JSON list: a report (with its level) or an error per file", action="store_true"),
    )),
    Command("evaluate", "score renderers on self- and cross-identity episodes of a dataset split (resumable)",
            _evaluate, (
        Arg("--data", "dataset folder made by `marionette preprocess`", required=True),
        Arg("--out", "report folder (created; a rerun resumes and rebuilds the report)", required=True),
        Arg("--episode-list", "reuse this episodes.csv (default: REPORT_DIR/episodes.csv if present, else a new list)"),
        Arg("--checkpoint", "trained generator export the neural renderer runs (default: the shipped generator), "
            "or the ONNX export folder the onnx renderer needs"),
        Arg("--landmark-transformer", "fitted landmark transformer driving cross-identity episodes (default: the "
            "one shipped with marionette)"),
        Arg("--arcface", "ArcFace ONNX file for CSIM (needs onnxruntime; default judge: dlib's ResNet)"),
        _QUIET,
        _set("override one setting listed below (repeat for more; expression.KEY for the thresholds)"),
    ), settings=EvalConfig, skip=("arcface", "checkpoint", "landmark_transformer"),
        heading="settings (--set KEY=VALUE; comma lists for renderers, shots, modes, external; external may also "
                "be repeated):",
        notes=("expression thresholds (--set expression.KEY=VALUE):\n" + describe(ExpressionConfig),)),
    Command("bench", "measure preprocessing, episode-loading, reenactment throughput, the networks' cost (model) "
            "and a training step's phases (train)", _bench, (
        Arg("what", "which benchmark (all: every one but model and train)",
            choices=("preprocess", "episodes", "reenact", "model", "train", "all")),
        Arg("--video", "video to use (None: the demo's sample clip); the README's figures use "
            "../shared/data/videos/lp_d0.mp4 (preprocess, episodes) and lp_d3.mp4 (reenact)"),
        Arg("--workers", "DataLoader workers to measure", type=_count(0, 256), nargs="+", default=[0, 2]),
        Arg("--episodes", "episodes timed per setting", type=_count(1, 1_000_000), default=200),
        Arg("--repeats", "runs per measurement; the best is reported", type=_count(1, 1000), default=3),
        Arg("--checkpoint", "reenact: the generator export the neural and onnx renderers run (None: the shipped "
            "generator, as reenact runs it)"),
        Arg("--presets", "model: comma list of presets", default="tiny,cpu,paper"),
        Arg("--ks", "model: comma list of numbers of targets", type=_counts(1, 64), default="1,2,4,8"),
        Arg("--batch", "model: comma list of batch sizes (frames per call, one target set)", type=_counts(1, 1024),
            default="1"),
        Arg("--precision", "model: comma list of fp32, bf16, fp16 (weights and inputs cast; on CPUs without native "
            "bf16 a paper-preset frame takes minutes)", default="fp32"),
        Arg("--device", "model: where to run; preprocess: where the face mesh runs: auto (cuda, else mps, else cpu), "
            "cpu, cuda, cuda:N, mps (default: cpu)", type=_device, default="cpu"),
        Arg("--rounds", "model: interleaved timing rounds (median)", type=_count(1, 10000), default=15),
        Arg("--out", "model, train: also write the report to this markdown file"),
        Arg("--data", "train: dataset made by `marionette preprocess` at one of the sizes (None: synthetic clips)"),
        _set("reenact: override one `marionette reenact` setting (repeat for more), e.g. precision=bf16 or "
             "device=cuda; train: one of " + " ".join(
                 f"{f.name}={','.join(map(str, f.default)) if isinstance(f.default, tuple) else f.default}"
                 for f in dataclasses.fields(BenchTrainConfig))),
    )),
    Command("train", "train the generator and discriminator on a dataset (rerun the same command to resume)", _train, (
        _set(),
        Arg("--config", "preset: paper (256 px), cpu (128 px, trains on a CPU), warp-cpu (ours: the warp-guided "
            "model and its recipe for two CPU cores, 128 px), tiny (64 px, tests) (default: cpu)",
            default="cpu", choices=tuple(TRAIN_PRESETS)),
        Arg("--data", "dataset folder made by `marionette preprocess` (crops of the preset's size)", required=True),
        Arg("--run", "run folder (created; rerunning the same command resumes from its last checkpoint)",
            required=True),
        Arg("--init", "start a new run's generator and its EMA from this generator export "
            "(RUN/export/generator.safetensors, or a shipped one; its model config must be the run's); the "
            "discriminator and optimizers start fresh; a run folder that resumes ignores it", metavar="EXPORT"),
        Arg("--dry-run", "print the resolved config as JSON and exit", action="store_true"),
        _QUIET,
    ), settings=TrainConfig,
        heading="training settings (--set KEY=VALUE; model, loss and episode settings as --set model.KEY=VALUE, "
                "loss.KEY=VALUE, episodes.KEY=VALUE):",
        notes=("presets change these training settings:\n" + "\n".join(
                   f"  {name}: {' '.join(f'{k}={v}' for k, v in changes.items()) or '(none)'}"
                   for name, changes in TRAIN_PRESETS.items()),
               "model.KEY:\n" + describe(ModelConfig),
               "loss.KEY:\n" + describe(LossConfig),
               "episodes.KEY (tiny: k_max=2; warp-cpu: k_max=4 colour_jitter=0.4):\n" + describe(EpisodeConfig),
               "multiple GPUs or nodes: torchrun --nproc_per_node N [--nnodes M --node_rank R --rdzv_backend c10d "
               "--rdzv_endpoint HOST:PORT] -m marionette.cli train ...")),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `COMMANDS`. A command with settings keeps its epilog's line breaks; one without
    shows each option's default."""
    parser = _Parser(prog="marionette", description="Few-shot face reenactment (MarioNETte).",
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"marionette {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        epilog = command.epilog()
        p = sub.add_parser(command.name, help=command.help, epilog=epilog, formatter_class=(
            argparse.ArgumentDefaultsHelpFormatter if epilog is None else argparse.RawDescriptionHelpFormatter))
        for arg in command.args:
            arg.add_to(p)
        p.set_defaults(func=command.run)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, `timeout`, `kill`): the command stops as on Ctrl-C, removing its
    temporaries (the app: its uploads and results)."""


_terminating = threading.Event()  # set by SIGTERM: a library that wraps Terminated in an error of its own still stops as SIGTERM


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one does not cut the clean-up short
    _terminating.set()
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """Inside, SIGTERM raises Terminated in the main thread (the only one that may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _terminating.clear()
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _last_line(message: str) -> None:
    """A stopped run's last line on stderr. Threads of native libraries still winding down (MediaPipe's
    graph, stopped mid-start, logs from C++ past Python's logging) write nothing after it."""
    print(message, file=sys.stderr, flush=True)
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
            logging.basicConfig(level=logging.WARNING, format="marionette: %(message)s")
            logging.getLogger("marionette").setLevel(logging.INFO)
            with _sigterm_as_ctrl_c():
                status = args.func(args)  # None, or an exit status of its own (verify)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
    except BrokenPipeError:  # stdout's reader has gone (`marionette verify --json | head`): end quietly, as `cat` does
        with contextlib.suppress(OSError, ValueError):  # nothing left for the interpreter's last flush to fail on
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as for any program a closed pipe stops
    except Terminated:
        _last_line("marionette: terminated")
        return 143  # 128 + SIGTERM
    except (InputError, OSError) as e:
        if _terminating.is_set():  # e.g. torch turns the signal's exception, raised inside its tensor creation, into a TypeError
            _last_line("marionette: terminated")
            return 143
        print(f"marionette: error: {e if isinstance(e, InputError) else os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _last_line("marionette: interrupted")
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
