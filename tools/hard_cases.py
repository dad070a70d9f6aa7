"""Render the hard real cases (../shared/data/hard/cases.json), re-detect each output's face with the
same face mesh, and score it against the driver and the driven landmarks; compare two runs.

    PYTHONPATH=src python tools/hard_cases.py run OUT/LABEL [--cases ID,ID] [--demo] [--set KEY=VALUE ...] [--checkpoint EXPORT]
    PYTHONPATH=src python tools/hard_cases.py compare BEFORE AFTER --out docs/hard_cases [--public]
    PYTHONPATH=src python tools/hard_cases.py mouths CASE --frames F,F --out FILE.jpg [--set ...] [--checkpoint EXPORT] [--public]

`run` writes LABEL/CASE.npz (per frame: the driver's, the driven and the output's meshes, NaN where no
face was found; at the driver's closed-eye frames, the mesh of the output with the driver's eyes laid
in; the renderer's folded-pixel share; the driver and output crops at the sheet frames), then
LABEL/summary.json. `--demo` adds the bundled demo (Grace Hopper with the GRID clip). `compare`
writes OUT/table.md (both runs' figures against the bars, scored again from their meshes) and OUT/CASE.jpg
contact sheets: driver | target | before | after at the sheet frames (frame 0, the driver's widest
mouth, its most closed eyes, its largest turn); `--public` keeps to what ../shared/data/SOURCES.md
puts in tier A (a case whose target is not is left out, a driver that is not is not shown).
`mouths` draws one case twice, with `mouth=drawn` and `mouth=driver`, and writes close-ups of the
output's mouth at the given driver frames side by side.

Figures (every mesh is MediaPipe's, tracked through the clip; the measures are
marionette.landmarks.measures): `mouth_r` Pearson r of the output's lip gap with the driver's
(in 3D, as every mouth figure here: a turned face's mouth is not foreshortened; `mouth_r_2d` in the
image, as before 2026-12-05, in summary.json only);
`mouth_flips` frames whose mouth is closed (< 0.03) in one and open (> 0.15) in the other;
`eye_recall` share of the driver's closed-eye frames (openness < 0.1) where the output's eyes are closed
too (with n); `real_eye_recall` the same share for the output with the driver's own shut eyes laid over
its eyes (`driver_eyes`, re-detected as a still): a real shut eye, not a drawn one, so where both are low
the face mesh reads this face's shut eyes open whatever lid is drawn; `eye_vs_driven` median |output -
driven openness| at those frames (both over the eyes seen since 2026-12-06, `seen_openness`: one drawn
under 0.6 of the other's width (half until 2026-12-07), the far eye of a turned head, is left out of the
driven and the output's, one the driver shows so of the driver's); `real_eye_vs_driven` the same median
for the output with the driver's eyes laid in (where a real shut eye misses 0.05 too, the bar is the measure's,
not the lid's); `eye_floor` the same median for the
driver's own eyes in place of the output's (what an output whose eyes read exactly as the driver's would
score: the face mesh reads a shut eye 0.03-0.08 open where the driven lids meet), `eye_vs_driver` the
output's against the driver's; `found` share of output frames with a face; `folded` mean share of the
face's pixels drawn from a part of the target it shows folded or edge-on (the warp's tearing, see
WarpRenderer.folded_share); `yaw_err` median |output yaw - driven yaw|, degrees.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from marionette.config import override
from marionette.inference import demo
from marionette.inference.io import open_driver
from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
from marionette.landmarks.layout import MESH_EYE_OPENINGS, MESH_INNER_LIPS, mesh_to_ibug68
from marionette.landmarks.measures import CLOSED_EYE, CLOSED_MOUTH, WIDE_MOUTH, eye_openness, lip_gap, seen_openness
from marionette.landmarks.mesh import FaceMesh
from marionette.landmarks.pose import head_pose

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CASES = SHARED / "data" / "hard" / "cases.json"
DEMO = {"id": "0_demo_hopper_grid", "target": [str(demo.TARGET)], "driver": str(demo.DRIVER)}
OPEN_MOUTH = 0.15  # lip gap above which a mouth counts as clearly open
ROW = 160  # pixels per row of a contact sheet
NAN = np.full((478, 3), np.nan, np.float32)


def _cases(ids: str | None, demo: bool) -> list[dict]:
    cases = json.loads(CASES.read_text())
    for case in cases:
        case["target"] = [str(SHARED / t) for t in case["target"]]
        case["driver"] = str(SHARED / case["driver"])
    if ids:
        wanted = ids.split(",")
        cases = [c for c in cases if any(c["id"].startswith(w) for w in wanted)]
    return ([DEMO] if demo else []) + cases


def _mesh(tracker: FaceMesh, image: np.ndarray) -> np.ndarray:
    faces = tracker.detect(image)
    return faces[0].mesh if faces else NAN


def driver_eyes(output: np.ndarray, driver: np.ndarray, driver_mesh: np.ndarray, driven_mesh: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: `output` with the driver's own eyes laid over the driven ones: each eye's region of
    `driver` moved by the similarity that takes its opening (`driver_mesh`'s 16 points) onto the driven
    one, its colours matched to the output's there (mean and spread per channel), blended in through a
    soft ellipse 1.2 eye widths wide and 0.5 tall. A control for the eye figures: a real eye, not a drawn one."""
    out = output.astype(np.float32)
    for opening in MESH_EYE_OPENINGS:
        src, dst = driver_mesh[opening, :2].astype(np.float32), driven_mesh[opening, :2].astype(np.float32)
        similarity, _ = cv2.estimateAffinePartial2D(src, dst)
        if similarity is None:
            continue
        moved = cv2.warpAffine(driver, similarity, output.shape[1::-1], flags=cv2.INTER_LINEAR).astype(np.float32)
        corners = dst[8] - dst[0]
        width = float(np.linalg.norm(corners))
        mask = np.zeros(output.shape[:2], np.float32)
        cv2.ellipse(mask, tuple(int(round(c)) for c in dst.mean(0)), (int(0.6 * width), int(0.25 * width)),
                    float(np.degrees(np.arctan2(corners[1], corners[0]))), 0, 360, 1.0, -1)
        inside = mask > 0.5
        if inside.sum() < 10:
            continue
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.06 * width, 0.5))
        a, b = moved[inside], out[inside]  # (n, 3) each
        moved = (moved - a.mean(0)) / (a.std(0) + 1e-6) * b.std(0) + b.mean(0)
        out += (moved - out) * mask[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render_case(case: dict, settings: list[str], checkpoint: Path | None = None) -> dict[str, np.ndarray]:
    """Render one case as a crop (paste_back off: the face at the renderer's size) and measure it;
    with the warp renderer, or the generator export `checkpoint`."""
    config = override(ReenactConfig(paste_back=False, renderer="warp" if checkpoint is None else "auto"), settings)
    pipeline = ReenactPipeline(config, checkpoint=checkpoint)
    pipeline.set_targets(case["target"])
    folded: list[float] = []
    render_batch = pipeline.renderer.render_batch  # every renderer draws through it (the neural one in batches)

    def recording(meshes: np.ndarray, mouths: list | None = None) -> np.ndarray:  # (B, 478, 3) driven meshes
        share = getattr(pipeline.renderer, "folded_share", None)  # before the render: it reads the warp's blend so far
        folded.extend(share(mesh) if share else np.nan for mesh in meshes)
        return render_batch(meshes, mouths)

    pipeline.renderer.render_batch = recording  # type: ignore[method-assign]
    driven, drivers, outputs, frames, lent = [], [], [], [], []
    with FaceMesh(video=True, max_faces=1) as on_driver, FaceMesh(video=True, max_faces=1) as on_output, \
            FaceMesh(video=False, max_faces=1) as on_still:
        for rendered in pipeline.render_frames(open_driver(case["driver"])):
            driven.append(rendered.driven)
            drivers.append(_mesh(on_driver, rendered.driver))
            outputs.append(_mesh(on_output, rendered.output))
            frames.append((rendered.driver, rendered.output))
            shut = not np.isnan(drivers[-1][0, 0]) and seen_openness(drivers[-1])[()] < CLOSED_EYE
            lent.append(_mesh(on_still, driver_eyes(rendered.output, rendered.driver, drivers[-1], rendered.driven))
                        if shut else NAN)
    driver, out = np.stack(drivers), np.stack(outputs)
    picks = _picks(driver)
    return {"driver": driver, "driven": np.stack(driven), "output": out, "driver_eyes": np.stack(lent),
            "folded": np.array(folded),
            "picks": np.array(picks), "driver_frames": np.stack([_fit(frames[i][0]) for i in picks]),
            "output_frames": np.stack([_fit(frames[i][1]) for i in picks]),
            "target": _fit(pipeline.targets[0].crop)}


def _fit(image: np.ndarray) -> np.ndarray:
    """An image scaled to a ROW x ROW square (letterboxed)."""
    h, w = image.shape[:2]
    k = ROW / max(h, w)
    small = cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    out = np.zeros((ROW, ROW, 3), np.uint8)
    y, x = (ROW - small.shape[0]) // 2, (ROW - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def _picks(driver: np.ndarray) -> list[int]:
    """Sheet frames: 0, the driver's widest mouth, its most closed eyes, its largest turn."""
    ok = ~np.isnan(driver[:, 0, 0])
    gap = np.where(ok, lip_gap(np.nan_to_num(driver)), -1)
    eyes = np.where(ok, eye_openness(np.nan_to_num(driver)), 9)
    yaw = np.array([abs(head_pose(mesh_to_ibug68(m))[0]) if k else -1 for m, k in zip(driver, ok)])
    picks = [0, int(gap.argmax()), int(eyes.argmin()), int(yaw.argmax())]
    return list(dict.fromkeys(picks))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def score(m: dict[str, np.ndarray]) -> dict[str, float]:
    driver, driven, out = m["driver"], m["driven"], m["output"]
    found = ~np.isnan(out[:, 0, 0])
    both = found & ~np.isnan(driver[:, 0, 0])
    gap_d, gap_o = lip_gap(driver[both], depth=True), lip_gap(out[both], depth=True)  # not foreshortened by turns
    eye_d = seen_openness(driver[both], driver[both])
    eye_o, eye_v = seen_openness(out[both], driven[both]), seen_openness(driven[both], driven[both])  # the eyes drawn
    closed = eye_d < CLOSED_EYE
    flips = ((gap_d < CLOSED_MOUTH) & (gap_o > OPEN_MOUTH)) | ((gap_d > OPEN_MOUTH) & (gap_o < CLOSED_MOUTH))
    yaw_o = np.array([head_pose(mesh_to_ibug68(x))[0] for x in out[found]])
    yaw_v = np.array([head_pose(mesh_to_ibug68(x))[0] for x in driven[found]])
    return {
        "frames": int(len(out)), "found": float(found.mean()),
        "mouth_r": _pearson(gap_o, gap_d), "mouth_r_2d": _pearson(lip_gap(out[both]), lip_gap(driver[both])),
        "mouth_flips": int(flips.sum()),
        "mouth_open_ratio": float(np.median(gap_o[gap_d > WIDE_MOUTH]) / np.median(gap_d[gap_d > WIDE_MOUTH]))
        if (gap_d > WIDE_MOUTH).sum() >= 3 else float("nan"),
        "eye_closed_n": int(closed.sum()),
        "eye_recall": float((eye_o[closed] < CLOSED_EYE).mean()) if closed.any() else float("nan"),
        "eye_vs_driven": float(np.median(np.abs(eye_o[closed] - eye_v[closed]))) if closed.any() else float("nan"),
        "eye_floor": float(np.median(np.abs(eye_d[closed] - eye_v[closed]))) if closed.any() else float("nan"),
        "eye_vs_driver": float(np.median(np.abs(eye_o[closed] - eye_d[closed]))) if closed.any() else float("nan"),
        "driven_eye_recall": float((eye_v[closed] < CLOSED_EYE).mean()) if closed.any() else float("nan"),
        **(_real_eyes(m["driver_eyes"][both][closed], driven[both][closed], eye_v[closed]) if "driver_eyes" in m
           else {"real_eye_recall": float("nan"), "real_eye_vs_driven": float("nan")}),
        "folded": float(np.nanmean(m["folded"])) if np.isfinite(m["folded"]).any() else float("nan"),
        "folded_max": float(np.nanmax(m["folded"])) if np.isfinite(m["folded"]).any() else float("nan"),
        "yaw_err": float(np.median(np.abs(yaw_o - yaw_v))) if found.any() else float("nan"),
    }


def _real_eyes(lent: np.ndarray, driven: np.ndarray, driven_open: np.ndarray) -> dict[str, float]:
    """The eye figures of the driver-eyed outputs (`driver_eyes`; (N, 478, 3) meshes re-detected as stills,
    NaN where no face was found) at the driver's N closed-eye frames: `real_eye_recall` the share read shut (a
    face not found counts as open), `real_eye_vs_driven` the median |openness - the driven's (`driven_open`)|
    over the faces found."""
    if not len(lent):
        return {"real_eye_recall": float("nan"), "real_eye_vs_driven": float("nan")}
    found = ~np.isnan(lent[:, 0, 0])
    seen = seen_openness(lent[found], driven[found])
    return {"real_eye_recall": float((seen < CLOSED_EYE).sum() / len(lent)),
            "real_eye_vs_driven": float(np.median(np.abs(seen - driven_open[found]))) if found.any() else float("nan")}


def run(out: Path, ids: str | None, demo: bool, settings: list[str], checkpoint: Path | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    for case in _cases(ids, demo):
        start = time.perf_counter()
        measured = render_case(case, settings, checkpoint)
        np.savez_compressed(out / f"{case['id']}.npz", **measured)
        summary[case["id"]] = score(measured) | {"seconds": round(time.perf_counter() - start, 1)}
        summary_path.write_text(json.dumps({"settings": settings} | summary, indent=1) + "\n")
        print(case["id"], json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                      for k, v in summary[case["id"]].items()}), flush=True)


COLUMNS = (("found", "≥ 0.98"), ("mouth_r", "≥ 0.8"), ("mouth_flips", "0"), ("mouth_open_ratio", "≈ 1"),
           ("eye_recall", "≥ 0.8"), ("real_eye_recall", "–"), ("eye_vs_driven", "≤ 0.05"), ("real_eye_vs_driven", "–"),
           ("eye_floor", "–"), ("eye_vs_driver", "–"),
           ("folded", "0"), ("yaw_err", "small"))


def _cell(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def tier_a() -> set[str]:
    """File names that ../shared/data/SOURCES.md puts in tier A (clear to ship: public domain, CC BY)."""
    names, tier = set(), None
    for line in (SHARED / "data" / "SOURCES.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "tier" in cells:
            tier = cells.index("tier")
        elif tier is not None and len(cells) > tier and cells[tier].startswith("A"):
            names.add(cells[0].strip("`"))
        elif not line.startswith("|"):
            tier = None
    return names


def compare(before: Path, after: Path, out: Path, public: bool) -> None:
    """The table of both runs, and a contact sheet per case; `public`: only cases whose targets are
    all tier A, the driver column only where the driver is too (research-only media stay out)."""
    out.mkdir(parents=True, exist_ok=True)
    shippable = tier_a()
    cases = {c["id"]: c for c in _cases(None, demo=True)}
    measured = [case for case in cases if (before / f"{case}.npz").is_file() and (after / f"{case}.npz").is_file()]
    # both runs scored here, from their per-frame meshes: the same measures whatever the runs' code
    a, b = ({case: score(dict(np.load(run / f"{case}.npz"))) for case in measured} for run in (before, after))
    lines = ["| case | " + " | ".join(f"{name} ({bar})" for name, bar in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for case in measured:
        cells = []
        for name, _ in COLUMNS:
            x, y = a[case].get(name), b[case].get(name)
            extra = f" (n={b[case]['eye_closed_n']})" if name == "eye_recall" and b[case]["eye_closed_n"] else ""
            cells.append(f"{_cell(x)} → **{_cell(y)}**{extra}")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
        shown = [Path(t).name in shippable for t in cases[case]["target"]] + [Path(cases[case]["driver"]).name in shippable]
        if not public or all(shown[:-1]):
            _sheet(before / f"{case}.npz", after / f"{case}.npz", out / f"{case}.jpg", driver=not public or shown[-1])
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, width, cv2.LINE_AA)
    return out


def _sheet(before: Path, after: Path, path: Path, driver: bool) -> None:
    """Rows of driver | target | before | after at the sheet frames (without the driver: its frame
    number over the target)."""
    a, b = np.load(before), np.load(after)
    rows = []
    for i, pick in enumerate(b["picks"]):
        j = list(a["picks"]).index(pick) if pick in a["picks"] else None
        old = a["output_frames"][j] if j is not None else np.zeros((ROW, ROW, 3), np.uint8)
        first = [_label(b["driver_frames"][i], f"driver f{pick}"), _label(b["target"], "target")] if driver else \
            [_label(b["target"], f"target; frame {pick}")]
        rows.append(np.concatenate([*first, _label(old, "before"), _label(b["output_frames"][i], "after")], 1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])


def mouths(case_id: str, frames: list[int], out: Path, settings: list[str], checkpoint: Path | None,
           public: bool) -> None:
    """Close-ups of the output's mouth at `frames` (driver frame numbers), drawn with `mouth=drawn`
    (the cavity) and `mouth=driver` (the driver's teeth): rows of driver | drawn | driver's teeth (the
    driver column only where the driver may be shown)."""
    case = next(c for c in _cases(None, case_id.startswith("0")) if c["id"].startswith(case_id))
    shown = not public or Path(case["driver"]).name in tier_a()
    if public and not all(Path(t).name in tier_a() for t in case["target"]):
        raise SystemExit(f"{case['id']}: its target is not tier A (--public)")
    rows: dict[int, list[np.ndarray]] = {f: [] for f in frames}
    for mouth in ("drawn", "driver"):
        config = override(ReenactConfig(paste_back=False, renderer="warp" if checkpoint is None else "auto",
                                         max_frames=max(frames) + 1), [*settings, f"mouth={mouth}"])
        pipeline = ReenactPipeline(config, checkpoint=checkpoint)
        pipeline.set_targets(case["target"])
        for i, rendered in enumerate(pipeline.render_frames(open_driver(case["driver"]))):
            if i in rows:
                if mouth == "drawn" and shown:
                    rows[i].append(_label(_fit(rendered.driver), f"driver f{i}"))
                rows[i].append(_label(_close_up(rendered.output, rendered.driven), f"mouth={mouth}"))
    sheet = np.concatenate([np.concatenate(row, 1) for row in rows.values()], 0)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def _close_up(image: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """(ROW, ROW * 3 // 2, 3) the region around a (478, 3) mesh's inner lips, scaled up."""
    ring = mesh[MESH_INNER_LIPS, :2]
    centre, half = ring.mean(0), np.ptp(ring[:, 0]) * 1.2
    x0, y0 = np.maximum(np.round(centre - [half, half * 2 / 3]).astype(int), 0)
    x1, y1 = np.round(centre + [half, half * 2 / 3]).astype(int)
    return cv2.resize(image[y0:y1, x0:x1], (ROW * 3 // 2, ROW), interpolation=cv2.INTER_CUBIC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--cases")
    r.add_argument("--demo", action="store_true")
    r.add_argument("--set", action="append", default=[], dest="settings")
    r.add_argument("--checkpoint", type=Path, help="a generator export to render with (default: the warp)")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--public", action="store_true", help="only what may be shipped (tier A targets and drivers)")
    m = sub.add_parser("mouths")
    m.add_argument("case", help="a case id or its start (0: the demo)")
    m.add_argument("--frames", required=True, help="driver frame numbers, comma-separated")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--set", action="append", default=[], dest="settings")
    m.add_argument("--checkpoint", type=Path, help="a generator export to render with (default: the warp)")
    m.add_argument("--public", action="store_true", help="only what may be shipped (tier A targets and drivers)")
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, args.cases, args.demo, args.settings, args.checkpoint)
    elif args.command == "compare":
        compare(args.before, args.after, args.out, args.public)
    else:
        mouths(args.case, [int(f) for f in args.frames.split(",")], args.out, args.settings, args.checkpoint,
               args.public)


if __name__ == "__main__":
    main()
