"""The evaluation report, rebuilt from REPORT_DIR/results.jsonl: report.md and report.json (metric
x renderer x shots x mode, with n), the difference between every two renderers with its paired
bootstrap interval, identity beside motion fidelity, one PNG plot per metric against K (with two
K or more), one plot of identity against motion per mode (a panel per renderer), and sample
grids per (mode, K).

Intervals (ours): the episodes of a (mode, K) cell are resampled with replacement, the same
episodes for both renderers of a pair (paired: a hard episode is hard for both), BOOTSTRAP times
with a fixed seed; each resample's difference is taken between the two renderers' figures,
reduced as the metric reduces (a mean, an RMS, a correlation or a kernel distance over the
episodes); the interval is the 2.5th..97.5th percentile of those differences.
"""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

from marionette.data.store import ClipInfo
from marionette.evaluation.config import MODES
from marionette.evaluation.external import clip_rate
from marionette.evaluation.metrics import REGISTRY, TEMPORAL, Value, summarize, values_array
from marionette.inference.config import RENDERERS
from marionette.inference.io import FrameWriter
from marionette.media import atomic_path, load_image
from marionette.provenance import Watermark, container_tags, save_marked_image

BOOTSTRAP = 1000  # resamples of the paired bootstrap
BOOTSTRAP_SEED = 0  # fixed: a report rebuilt from the same results has the same intervals
LEVEL = 0.95  # interval coverage
RESOLVE = 0.3  # dB: the self PSNR difference the report says how many episodes would resolve
RESOLVED = ("psnr", "video_psnr")  # the self PSNR metrics whose resolution the report states
IDENTITY = ("identity_score", "csim")
MOTION = ("prmse_driven", "expression_agreement_driven", "nme", "motion_correlation", "motion_error")
STILLNESS = ("landmark_jitter", "flicker", "jumps")
assert {"video_psnr", *MOTION[3:], *STILLNESS} == set(TEMPORAL)


def _records(out: Path) -> list[dict]:
    records = []
    for line in (out / "results.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return records


def _order(renderer: str) -> tuple[int, str]:
    """Column order: ours as RENDERERS lists them (the baseline first), then external ones by name."""
    ours = list(RENDERERS)
    return (ours.index(renderer), "") if renderer in ours else (len(ours), renderer)


def _cells(records: list[dict]) -> dict[tuple[str, str, int], dict[int, dict[str, Value]]]:
    """(mode, renderer, K) -> {episode: {metric: value}}."""
    cells: dict[tuple[str, str, int], dict[int, dict[str, Value]]] = defaultdict(dict)
    for r in records:
        cells[r["mode"], r["renderer"], r["shots"]][r["episode"]] = r["metrics"]
    return cells


def summarize_results(records: list[dict]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """-> {mode: {metric: {renderer: {K: figure}}}}, plus per-cell episode counts under "episodes";
    metrics in the registry's order."""
    table: dict = {mode: {} for mode in MODES}
    for (mode, renderer, shots), by_episode in sorted(_cells(records).items()):
        values = list(by_episode.values())
        cells = {**summarize(values), "episodes": float(len(values))}
        for metric, figure in cells.items():
            table[mode].setdefault(metric, {}).setdefault(renderer, {})[str(shots)] = figure
    order = [*REGISTRY, "episodes"]
    return {mode: {m: rows[m] for m in sorted(rows, key=order.index)} for mode, rows in table.items() if rows}


def measured_counts(records: list[dict]) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """-> {mode: {metric: {renderer: {K: n}}}}: the episodes in which the metric was measured."""
    counts: dict = {}
    for (mode, renderer, shots), by_episode in _cells(records).items():
        for metric in {m for v in by_episode.values() for m in v}:
            n = sum(v.get(metric) is not None for v in by_episode.values())
            counts.setdefault(mode, {}).setdefault(metric, {}).setdefault(renderer, {})[str(shots)] = n
    return counts


def paired_bootstrap(a: list[Value], b: list[Value], metric: str, seed: list[int]) -> tuple[float, float, float]:
    """Two renderers' values on the same episodes (paired by position) -> (figure of b - figure of
    a, interval low, high): LEVEL percentile interval over BOOTSTRAP resamples of the episodes."""
    over = REGISTRY[metric].reduce.of
    xa, xb = values_array(a), values_array(b)  # (N, D) each
    every = np.arange(len(a))[None]  # (1, N)
    picks = np.random.default_rng(seed).integers(0, len(a), (BOOTSTRAP, len(a)))  # (B, N) episode indices
    with np.errstate(invalid="ignore"):  # inf - inf (two perfect PSNRs) is left out
        difference = float(over(xb, every)[0] - over(xa, every)[0])
        resampled = over(xb, picks) - over(xa, picks)  # (B,)
    kept = resampled[np.isfinite(resampled)]
    low, high = np.percentile(kept, [50 * (1 - LEVEL), 50 * (1 + LEVEL)]) if len(kept) else (np.nan, np.nan)
    return difference, float(low), float(high)


def renderer_differences(records: list[dict]) -> dict[str, dict[str, dict[str, dict[str, list[float]]]]]:
    """-> {mode: {metric: {"B - A": {K: [difference, low, high, n]}}}} for every two renderers A
    before B (the baseline first), over the episodes both were measured on."""
    cells = _cells(records)
    out: dict = {}
    for mode_index, mode in enumerate(MODES):
        for shots in sorted({k for m, _, k in cells if m == mode}):
            renderers = sorted({r for m, r, k in cells if (m, k) == (mode, shots)}, key=_order)
            for first, second in combinations(renderers, 2):
                a, b = cells[mode, first, shots], cells[mode, second, shots]
                episodes = sorted(set(a) & set(b))
                if len(episodes) < 2:
                    continue
                metrics = [m for m in REGISTRY if any(a[e].get(m) is not None and b[e].get(m) is not None
                                                      for e in episodes)]  # measured for both somewhere
                for metric in metrics:
                    seed = [BOOTSTRAP_SEED, mode_index, shots, len(episodes)]  # one set of resamples per cell
                    found = paired_bootstrap([a[e].get(metric) for e in episodes], [b[e].get(metric) for e in episodes],
                                             metric, seed)
                    out.setdefault(mode, {}).setdefault(metric, {}).setdefault(f"{second} - {first}", {})[
                        str(shots)] = [*found, float(len(episodes))]
    return out


def _fmt(x: float) -> str:
    return "–" if np.isnan(x) else f"{x:.0f}" if abs(x) >= 100 else f"{x:.3f}" if abs(x) < 10 else f"{x:.2f}"


def _signed(x: float) -> str:
    return "–" if np.isnan(x) else ("+" if x >= 0 else "−") + _fmt(abs(x))


def _arrow(metric: str) -> str:
    return " ↑" if REGISTRY[metric].higher_is_better else " ↓"


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


def resolution(differences: dict) -> list[str]:
    """What the episode count resolves: per self PSNR metric (one frame, or every frame of the
    video), the half-width of its renderer differences' intervals."""
    lines = []
    for metric in RESOLVED:
        cells = [cell for by_k in differences.get("self", {}).get(metric, {}).values() for cell in by_k.values()
                 if np.isfinite(cell[2] - cell[1])]  # [difference, low, high, n]
        if not cells:
            continue
        half, n = float(np.median([(high - low) / 2 for _, low, high, _ in cells])), int(np.median([c[3] for c in cells]))
        needed = int(np.ceil(n * (half / RESOLVE) ** 2))
        lines.append(f"resolution of {metric}: with n = {n} episodes, the {LEVEL:.0%} interval of a difference between "
                     f"two renderers is ±{half:.2f} dB (median half-width over the renderer pairs and K): smaller "
                     f"differences are noise; resolving {RESOLVE} dB would take about {needed} episodes per cell "
                     "(intervals narrow as 1/√n)")
    return lines or ["resolution: not measured (it needs two renderers with self PSNR on two episodes or more)"]


def _table(rows: dict, counts: dict, columns: list[tuple[str, str]]) -> list[str]:
    lines = ["| metric | " + " | ".join(f"{r} K={k}" for r, k in columns) + " |", "|---|" + "---:|" * len(columns)]
    episodes = rows.get("episodes", {})
    for metric, cells in rows.items():
        if metric == "episodes":
            lines.append("| episodes | " + " | ".join(f"{episodes.get(r, {}).get(k, 0):.0f}" for r, k in columns) + " |")
            continue
        shown = []
        for r, k in columns:
            figure, n = cells.get(r, {}).get(k, float("nan")), counts.get(metric, {}).get(r, {}).get(k)
            fewer = n is not None and n < episodes.get(r, {}).get(k, 0)
            shown.append(_fmt(figure) + (f" (n={n})" if fewer else ""))
        lines.append(f"| {metric}{_arrow(metric)} | " + " | ".join(shown) + " |")
    return lines


def _difference_table(rows: dict) -> list[str]:
    columns = sorted({(pair, k) for by_pair in rows.values() for pair, by_k in by_pair.items() for k in by_k},
                     key=lambda c: (c[0], int(c[1])))
    lines = ["| metric | " + " | ".join(f"{pair} K={k}" for pair, k in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for metric, by_pair in rows.items():
        shown = []
        for pair, k in columns:
            found = by_pair.get(pair, {}).get(k)
            if found is None:
                shown.append("–")
                continue
            difference, low, high, _ = found
            clear = low > 0 or high < 0
            text = f"{_signed(difference)} [{_signed(low)}, {_signed(high)}]"
            shown.append(f"**{text}**" if clear else text)
        lines.append(f"| {metric}{_arrow(metric)} | " + " | ".join(shown) + " |")
    return lines


def _identity_table(rows: dict, columns: list[tuple[str, str]]) -> list[str]:
    names = [m for m in (*IDENTITY, *MOTION) if m in rows]
    lines = ["| renderer K | " + " | ".join(f"{m}{_arrow(m)}" for m in names) + " |", "|---|" + "---:|" * len(names)]
    for r, k in columns:
        lines.append(f"| {r} K={k} | " + " | ".join(_fmt(rows[m].get(r, {}).get(k, float("nan"))) for m in names) + " |")
    return lines


def _markdown(table: dict, counts: dict, differences: dict, settings: dict, omitted: list[str],
              calibration: list[str]) -> str:
    lines = ["# Evaluation report", "",
             f"- dataset: `{settings['dataset']}`, split `{settings['split']}`, episode seed {settings['seed']}",
             f"- identity judge (CSIM): {settings['judge']}",
             *calibration,
             "- pose (PRMSE), expression indicators and NME: MediaPipe face mesh (still-image mode) on each "
             "result, 68-point layout, pose from 3D landmarks [ours: stand-in for OpenFace]",
             f"- cross-identity driving: landmark transformer, {settings['cross_mode']} mode, alpha "
             f"{settings['alpha']}; self: the driver's own landmarks (absolute)",
             "- ↑ higher is better, ↓ lower is better; a figure measured on fewer episodes than its cell's "
             "(a rate over the drivers with closed eyes, results with a face) shows its n",
             f"- differences: B − A per pair, the same episodes, with the {LEVEL:.0%} interval of a paired "
             f"bootstrap over episodes ({BOOTSTRAP} resamples, seed {BOOTSTRAP_SEED}); **bold**: the interval "
             "excludes 0",
             *(f"- {line}" for line in resolution(differences)),
             f"- videos: motion fidelity ({', '.join(MOTION[3:])}) beside stillness ({', '.join(STILLNESS)}); "
             "a frozen face is perfectly still, so stillness is read beside motion fidelity",
             *(f"- {note}" for note in omitted), ""]
    for mode, rows in table.items():
        columns = sorted({(r, k) for cells in rows.values() for r, by_k in cells.items() for k in by_k},
                         key=lambda c: (_order(c[0]), int(c[1])))
        lines += [f"## {mode}", "", *_table(rows, counts.get(mode, {}), columns), ""]
        if mode in differences:
            lines += [f"### {mode}: differences between renderers ({LEVEL:.0%} intervals)", "",
                      *_difference_table(differences[mode]), ""]
        if any(m in rows for m in IDENTITY) and any(m in rows for m in MOTION):
            lines += [f"### {mode}: identity beside motion fidelity", "",
                      "Identity alone rewards a renderer that does not move (a copied target is the target): "
                      "read it beside how well the driven pose and expression were followed. Per-episode "
                      f"plot: `plots/{mode}_identity_vs_motion.png`.", "", *_identity_table(rows, columns), ""]
    lines += ["## Metrics", ""] + [f"- **{m.name}** ({', '.join(m.modes)}; {'higher' if m.higher_is_better else 'lower'}"
                                   f" is better): {m.description}" for m in REGISTRY.values()]
    return "\n".join(lines) + "\n"


def _plots(out: Path, table: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for mode, rows in table.items():
        if len({k for by_k in rows["episodes"].values() for k in by_k}) < 2:
            continue  # one K: nothing to plot against K
        for metric, cells in rows.items():
            if metric == "episodes":
                continue
            fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
            fig.subplots_adjust(left=0.2, bottom=0.16, right=0.96, top=0.9)  # fixed: tight_layout costs 0.1 s a plot
            for renderer, by_k in sorted(cells.items(), key=lambda c: _order(c[0])):
                ks = sorted(by_k, key=int)
                ax.plot([int(k) for k in ks], [by_k[k] for k in ks], marker="o", label=renderer)
            ax.set(xlabel="K (targets)", ylabel=metric)
            ax.set_title(f"{metric} ({mode}){_arrow(metric)}", fontsize=9)
            ax.legend(fontsize=7)
            fig.savefig(out / "plots" / f"{mode}_{metric}.png")
            plt.close(fig)


def _tradeoff_plots(out: Path, records: list[dict]) -> None:
    """plots/<mode>_identity_vs_motion.png: per renderer, every episode's identity score against its
    pose error from the driven landmarks, a colour per K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for mode in MODES:
        chosen = [r for r in records if r["mode"] == mode]
        renderers = sorted({r["renderer"] for r in chosen}, key=_order)
        if not renderers:
            continue
        fig, axes = plt.subplots(1, len(renderers), figsize=(3.2 * len(renderers), 3.2), dpi=100, squeeze=False,
                                 sharex=True, sharey=True)
        for ax, renderer in zip(axes[0], renderers):
            for shots in sorted({r["shots"] for r in chosen}):
                points = [(r["metrics"].get("prmse_driven"), r["metrics"].get("identity_score")) for r in chosen
                          if (r["renderer"], r["shots"]) == (renderer, shots)]
                points = [p for p in points if None not in p]
                if points:
                    x, y = zip(*points)
                    ax.scatter(x, y, s=14, alpha=0.7, label=f"K={shots}")
            ax.set(title=renderer, xlabel="pose error vs driven (deg) ↓")
            if ax.collections:  # some episode had both figures (a face found in the result)
                ax.legend(fontsize=7)
        axes[0][0].set_ylabel("identity score ↑")
        fig.suptitle(f"identity vs motion fidelity ({mode}): best is top left", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "plots" / f"{mode}_identity_vs_motion.png")
        plt.close(fig)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def _grids(out: Path, records: list[dict]) -> None:
    """samples/grid_<mode>_k<K>.jpg: one row per kept episode: target, driver, each renderer."""
    renderers = sorted({r["renderer"] for r in records}, key=_order)
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


def write_video_wall(path: Path, columns: list[tuple[str, np.ndarray, bool]], info: ClipInfo) -> None:
    """An mp4 grid, one labelled column per (label, (F, S, S, 3) frames, synthetic) entry; synthetic
    columns say so on every frame and the file carries marionette's synthetic-media tag. It plays
    at the driver clip's pace (its kept frames spread over the source clip's duration)."""
    renderers = "+".join(label for label, _, synthetic in columns if synthetic)
    watermark = Watermark()
    with FrameWriter(path, clip_rate(info), container_tags(f"evaluation video wall: {renderers}")) as writer:
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
    table, counts, differences = summarize_results(records), measured_counts(records), renderer_differences(records)
    (out / "plots").mkdir(exist_ok=True)
    _plots(out, table)
    _tradeoff_plots(out, records)
    _grids(out, records)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps({"settings": settings, "omitted": omitted, "results": table, "measured": counts,
                                   "differences": differences,
                                   "bootstrap": {"resamples": BOOTSTRAP, "seed": BOOTSTRAP_SEED, "level": LEVEL}},
                                  indent=1) + "\n")
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text(_markdown(table, counts, differences, settings, omitted, _calibration_line(out)))
    return path
