"""The evaluation report, rebuilt from REPORT_DIR/results.jsonl: report.md and report.json (metric
x renderer x shots x mode), one PNG plot per metric against K, and sample grids per (mode, K)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from marionette.data.store import ClipInfo
from marionette.evaluation.metrics import MODES, REGISTRY, summarize
from marionette.inference.io import FrameWriter
from marionette.media import atomic_path, load_image
from marionette.provenance import Watermark, container_tags, save_marked_image


def _records(out: Path) -> list[dict]:
    records = []
    for line in (out / "results.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return records


def summarize_results(records: list[dict]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """-> {mode: {metric: {renderer: {K: figure}}}}, plus per-cell episode counts under "episodes"."""
    groups: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["mode"], r["renderer"], r["shots"])].append(r["metrics"])
    table: dict = {mode: {} for mode in MODES}
    for (mode, renderer, shots), values in sorted(groups.items()):
        cells = {**summarize(values), "episodes": float(len(values))}
        for metric, figure in cells.items():
            table[mode].setdefault(metric, {}).setdefault(renderer, {})[str(shots)] = figure
    return {mode: rows for mode, rows in table.items() if rows}


def _fmt(x: float) -> str:
    return "–" if np.isnan(x) else f"{x:.0f}" if abs(x) >= 100 else f"{x:.3f}" if abs(x) < 10 else f"{x:.2f}"


def _calibration_line(out: Path) -> list[str]:
    path = out / "calibration.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    sep = record["separation"]
    how = (f"it separates same- from different-person pairs of the dataset with ROC AUC {sep['auc']:.3f} "
           f"(raw cosine {sep['auc_cosine']:.3f}; same person in different clips only: {sep['auc_other_clip']:.3f}; "
           f"{sep['same_pairs']} same ({sep['same_pairs_other_clip']} across clips) / {sep['different_pairs']} "
           f"different ordered pairs of held-out frames, {sep['identities']} identities)"
           if "auc" in sep else sep["not_measured"])
    return [f"- identity score: CSIM placed between the target identity's different-person (0) and "
            f"same-person (1) references, from {record['frames_embedded']} frames "
            f"({record['frames_per_clip']} per clip) of {len(record['references'])} identities; {how}"]


def _markdown(table: dict, settings: dict, omitted: list[str], calibration: list[str]) -> str:
    lines = ["# Evaluation report", "",
             f"- dataset: `{settings['dataset']}`, split `{settings['split']}`, episode seed {settings['seed']}",
             f"- identity judge (CSIM): {settings['judge']}",
             *calibration,
             "- pose (PRMSE), expression indicators and NME: MediaPipe face mesh (still-image mode) on each "
             "result, 68-point layout, pose from 3D landmarks [ours: stand-in for OpenFace]",
             f"- cross-identity driving: landmark transformer, {settings['cross_mode']} mode, alpha "
             f"{settings['alpha']}; self: the driver's own landmarks (absolute)",
             *(f"- {note}" for note in omitted), ""]
    for mode, rows in table.items():
        columns = sorted({(r, k) for cells in rows.values() for r, by_k in cells.items() for k in by_k},
                         key=lambda c: (c[0], int(c[1])))
        lines += [f"## {mode}", "", "| metric | " + " | ".join(f"{r} K={k}" for r, k in columns) + " |",
                  "|---|" + "---:|" * len(columns)]
        for metric, cells in rows.items():
            arrow = "" if metric == "episodes" else " ↑" if REGISTRY[metric].higher_is_better else " ↓"
            fmt = (lambda x: f"{x:.0f}") if metric == "episodes" else _fmt
            lines.append(f"| {metric}{arrow} | " + " | ".join(fmt(cells.get(r, {}).get(k, float("nan")))
                                                            for r, k in columns) + " |")
        lines.append("")
    lines += ["## Metrics", ""] + [f"- **{m.name}** ({', '.join(m.modes)}): {m.description}"
                                   for m in REGISTRY.values()]
    return "\n".join(lines) + "\n"


def _plots(out: Path, table: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for mode, rows in table.items():
        for metric, cells in rows.items():
            if metric == "episodes":
                continue
            fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
            for renderer, by_k in sorted(cells.items()):
                ks = sorted(by_k, key=int)
                ax.plot([int(k) for k in ks], [by_k[k] for k in ks], marker="o", label=renderer)
            ax.set(xlabel="K (targets)", ylabel=metric, title=f"{metric} ({mode})")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out / "plots" / f"{mode}_{metric}.png")
            plt.close(fig)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def _grids(out: Path, records: list[dict]) -> None:
    """samples/grid_<mode>_k<K>.jpg: one row per kept episode: target, driver, each renderer."""
    renderers = sorted({r["renderer"] for r in records})
    cells = sorted({(r["mode"], r["shots"]) for r in records})
    for mode, shots in cells:
        rows = []
        for episode in sorted({r["episode"] for r in records if (r["mode"], r["shots"]) == (mode, shots)}):
            prefix = out / "samples" / f"{mode}_k{shots}_e{episode}"
            names = ["target", "driver", *renderers]
            paths = [Path(f"{prefix}_{n}.jpg") for n in names]
            if all(p.is_file() for p in paths):
                rows.append(np.concatenate([_label(load_image(p), n) for p, n in zip(paths, names)], axis=1))
        if rows:
            save_marked_image(out / "samples" / f"grid_{mode}_k{shots}.jpg", np.concatenate(rows, axis=0),
                              ",".join(renderers), quality=90)


WALL_FPS = 5.0  # video walls of clips whose source frame rate is unknown


def write_video_wall(path: Path, columns: list[tuple[str, np.ndarray, bool]], info: ClipInfo) -> None:
    """An mp4 grid, one labelled column per (label, (F, S, S, 3) frames, synthetic) entry; synthetic
    columns say so on every frame and the file carries marionette's synthetic-media tag. It plays
    at the driver clip's pace (its kept frames spread over the source clip's duration)."""
    fps = info.fps * info.frames / info.source_frames if info.fps > 0 and info.source_frames else WALL_FPS
    fps = max(1, round(fps))  # whole frames a second: the mp4 writer takes integer rates
    renderers = "+".join(label for label, _, synthetic in columns if synthetic)
    watermark = Watermark()
    with FrameWriter(path, fps, container_tags(f"evaluation video wall: {renderers}")) as writer:
        for t in range(min(len(frames) for _, frames, _ in columns)):
            panels = []
            for label, frames, synthetic in columns:
                panel = _label(frames[t], label)
                if synthetic:
                    cv2.putText(panel, "SYNTHETIC", (6, panel.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                                (255, 64, 64), 1, cv2.LINE_AA)
                panels.append(panel)
            writer.write(watermark.embed(np.concatenate(panels, axis=1)))  # tag, label and watermark


def write_report(out: Path, omitted: list[str]) -> Path:
    """Rebuild report.md, report.json, plots/ and sample grids from `out`/results.jsonl."""
    records = _records(out)
    settings = json.loads((out / "settings.json").read_text())
    table = summarize_results(records)
    (out / "plots").mkdir(exist_ok=True)
    _plots(out, table)
    _grids(out, records)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps({"settings": settings, "omitted": omitted, "results": table}, indent=1) + "\n")
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text(_markdown(table, settings, omitted, _calibration_line(out)))
    return path
