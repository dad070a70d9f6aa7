"""Sittings that add up (ours; `tools/train_more.sh`): after a sitting, score its export against
the shipped one on the val identities and replace the shipped generator and its model card only
if the new weights are better.

Both exports are scored on the same fixed self-reenactment episodes of the val split (the
training's `Validator`, at each K asked for), the candidate as it would be shipped (its weights
rounded to fp16). With nothing shipped yet, the bar is the warp renderer (the default then).
"Better" means a mean PSNR higher by at least `min_gain_db`, a lower mean L1, and (ours) a PSNR and a
mouth PSNR (the evaluation's mouth box) not lower at any K: a tie or worse replaces nothing. The per-K
terms are there because sittings traded one K for another (open mouths, then whole frames), which
mean PSNR over the Ks did not see (docs/training.md). With a shipped export, the average of its
weights and the sitting's (ours, `averaged`: the sitting's share) is scored beside the sitting's own,
and the better of the two that pass is shipped: a continuation that traded one K for another often
lands, averaged with where it started, above it at every K. The shipped file is the chosen export in
fp16 (at most MAX_MB), its header keeping the export's configs and step plus `sittings`, the record
of every sitting behind these weights; the model card (markdown) is rendered from that record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from marionette.config import to_dict
from marionette.data.manifest import Manifest
from marionette.errors import InputError
from marionette.inference.export import load_generator
from marionette.media import atomic_path, write_safetensors
from marionette.training.validation import Validator

MAX_MB = 25.0  # the largest generator file the package ships
METRICS = ("psnr", "l1", "ssim", "psnr_mouth")


@dataclass(frozen=True)
class Verdict:
    better: bool
    why: str  # one line
    candidate: dict[str, float]  # METRICS: mean over the val episodes of every K; psnr_kK, psnr_mouth_kK: at each K
    shipped: dict[str, float]  # the same for the shipped export (or the warp when none is shipped)
    bar: str  # what the candidate was measured against: "shipped export (step N)" or "warp renderer"


def as_shipped(path: Path) -> torch.nn.Module:
    """The export's generator with its weights rounded to fp16 (what shipping it keeps), in fp32."""
    generator = load_generator(path).generator
    with torch.no_grad():
        for tensor in generator.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half())
    return generator


def score(data: Path, exports: dict[str, Path | None], ks: list[int], episodes: int, seed: int = 0,
          batch_size: int = 8) -> dict[str, dict[str, float]]:
    """{name: {METRICS averaged over the Ks, psnr_kK and psnr_mouth_kK at each K}} of each export (None: the warp
    renderer) on `episodes` val episodes per K."""
    sums: dict[str, dict[str, float]] = {name: dict.fromkeys(METRICS, 0.0) for name in exports}
    generators = {name: as_shipped(path) for name, path in exports.items() if path is not None}
    for k in ks:
        validator = Validator(data, "val", episodes, k, seed, batch_size)
        for name, path in exports.items():
            scores = validator.baselines if path is None else validator(generators[name], torch.device("cpu"))
            prefix = "warp/" if path is None else "val/"
            for metric in METRICS:
                sums[name][metric] += scores[prefix + metric] / len(ks)
            sums[name][f"psnr_k{k}"] = scores[prefix + "psnr"]
            sums[name][f"psnr_mouth_k{k}"] = scores[prefix + "psnr_mouth"]
    return sums


def decide(candidate: dict[str, float], shipped: dict[str, float], min_gain_db: float) -> tuple[bool, str]:
    """Whether the candidate replaces the shipped weights, and why in one line."""
    gain = candidate["psnr"] - shipped["psnr"]
    numbers = (f"PSNR {candidate['psnr']:.4f} vs {shipped['psnr']:.4f} dB ({gain:+.4f}), "
               f"L1 {candidate['l1']:.5f} vs {shipped['l1']:.5f}")
    if gain < min_gain_db or gain <= 0:
        return False, f"{numbers}: the PSNR gain is under {min_gain_db} dB (a tie or worse)"
    if candidate["l1"] >= shipped["l1"]:
        return False, f"{numbers}: the L1 is not lower"
    for prefix, what in (("psnr_k", "PSNR"), ("psnr_mouth_k", "mouth PSNR")):
        lower = [f"K = {key.removeprefix(prefix)}: {candidate[key]:.4f} vs {shipped[key]:.4f} dB"
                 for key in candidate if key.startswith(prefix) and candidate[key] < shipped[key]]
        if lower:
            return False, f"{numbers}: the {what} is lower ({'; '.join(lower)})"
    return True, numbers


def average(start: Path, sitting: Path, out: Path, share: float) -> None:
    """Write the export `out`: `sitting`'s header (configs, step) with each floating tensor
    (1 - share) x `start`'s + share x `sitting`'s, in `sitting`'s dtype; both exports of one model."""
    with safe_open(str(start), framework="pt") as a, safe_open(str(sitting), framework="pt") as b:
        if set(a.keys()) != set(b.keys()):
            raise InputError(f"{sitting}: not the model of {start}; not averaged")
        tensors = {}
        for key in b.keys():
            x, y = a.get_tensor(key), b.get_tensor(key)
            if x.shape != y.shape:
                raise InputError(f"{sitting}: {key} is {tuple(y.shape)}, {tuple(x.shape)} in {start}; not averaged")
            tensors[key] = ((1 - share) * x.float() + share * y.float()).to(y.dtype) if y.is_floating_point() else y
        metadata = dict(b.metadata() or {})
    write_safetensors(out, {k: v.contiguous().numpy() for k, v in tensors.items()}, metadata)


def sittings(path: Path) -> list[dict[str, Any]]:
    """The sittings recorded in a shipped generator's header; a file shipped without that record
    counts as one sitting of unknown length."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "sittings" in metadata:
        return json.loads(metadata["sittings"])
    return [{"date": "unknown", "minutes": None, "steps": int(metadata.get("step", 0)), "from": "unknown"}]


def ship(candidate: Path, asset: Path, record: list[dict[str, Any]]) -> None:
    """Write `candidate` as the fp16 `asset` (atomically) with `record` in its header; refuse a
    file over MAX_MB (nothing replaced)."""
    with safe_open(str(candidate), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    half = {k: (v.half() if v.is_floating_point() else v).contiguous().numpy() for k, v in tensors.items()}
    megabytes = sum(v.nbytes for v in half.values()) / 2**20
    if megabytes > MAX_MB:
        raise InputError(f"{candidate}: {megabytes:.1f} MB in fp16, over the {MAX_MB:.0f} MB a shipped generator "
                         "may take; nothing replaced")
    write_safetensors(asset, half, {**metadata, "sittings": json.dumps(record)})


def settings_text(sitting: dict[str, Any]) -> str:
    """A sitting's settings for the card: none given (the preset's), as given, or ? (not recorded)."""
    if "settings" not in sitting:
        return "?"
    given = " ".join(f"`{s}`" for s in sitting["settings"]) or "none (the preset's)"
    share = sitting.get("averaged", 0.0)
    return f"{given}; shipped averaged with the weights before it ({share:g} of its own)" if share else given


def model_card(asset: Path, data: Path, terms: str) -> str:
    """The markdown model card of a shipped generator, from its header."""
    exported = load_generator(asset)
    record = sittings(asset)
    manifest = Manifest.load(data)
    minutes = sum(s["minutes"] or 0 for s in record)
    steps = sum(s["steps"] for s in record)
    params = sum(p.numel() for p in exported.generator.parameters()) / 1e6
    model = exported.model
    def number(value: float | None, digits: int = 4) -> str:
        return "?" if value is None else f"{value:.{digits}f}"

    rows = "\n".join(
        f"| {i + 1} | {s['date']} | {number(s['minutes'], 1)} | {s['steps']} | {s['from']} "
        f"| {number(s.get('val', {}).get('psnr'))} | {number(s.get('before', {}).get('psnr'))} ({s.get('bar', '?')}) "
        f"| {s.get('revision', '?')} | {settings_text(s)} |" for i, s in enumerate(record))
    last = record[-1]
    val_ids = sorted({c.info.identity for c in manifest.split("val")})
    train_clips = manifest.split("train")
    return "\n".join([
        "# Model card: the shipped generator (warp-guided MarioNETte, ours)" if model.warp_guided else
        "# Model card: the shipped generator (MarioNETte)",
        "",
        f"`{asset.name}`: {asset.stat().st_size / 2**20:.1f} MB, fp16 safetensors (no pickle), loaded with "
        "`marionette.inference.export.load_generator`; written by `tools/train_more.sh` only when a sitting's "
        "weights scored better than the ones before on the val identities.",
        "",
        f"- model: {params:.2f} M generator parameters, {model.image_size} px, "
        f"{'warp-guided' if model.warp_guided else 'faithful'}; config `{json.dumps(to_dict(model))}`",
        f"- data: `{data}` ({len(train_clips)} training clips of {len({c.info.identity for c in train_clips})} "
        f"identities); split `{manifest.config.split}` (val identities: {', '.join(val_ids)}; the test identities "
        "are never trained on)",
        f"- training: {len(record)} sitting(s), {minutes:.1f} minutes of training (wall clock of the `train` "
        f"commands, on the machine's cores) and {steps} steps in all (below; ? = not recorded)",
        f"- last sitting's val scores ({last.get('episodes', '?')} episodes per K, K = "
        f"{','.join(map(str, last.get('ks', ['?'])))}): "
        + ", ".join(f"{m} {number(last.get('val', {}).get(m))}" for m in METRICS)
        + f"; before it ({last.get('bar', '?')}): "
        + ", ".join(f"{m} {number(last.get('before', {}).get(m))}" for m in METRICS),
        f"- training data's terms: {terms}",
        "- known limits: gated on the val identities' self-reenactment (mean PSNR and L1; PSNR and the mouth's PSNR at each K) only; "
        "the test identities, cross-identity reenactment, the mouth's perceptual distance and the eyes are scored by "
        "`marionette evaluate`, not here (the "
        "figures of these weights, and whether the renderers use them by default: docs/training.md, \"Sittings\"); "
        f"trained at {model.image_size} px on few identities",
        "",
        "| sitting | date | minutes | steps | from | val PSNR | before (bar) | code | settings given |",
        "|---:|---|---:|---:|---|---:|---|---|---|",
        rows,
        "",
    ])


def finish_sitting(data: Path, candidate: Path, asset: Path, card: Path, minutes: float, started_from: str,
                   ks: list[int], episodes: int, min_gain_db: float, terms: str, revision: str,
                   settings: list[str], averaged: float = 0.0) -> Verdict:
    """Score the sitting's export `candidate` against `asset` (or the warp when there is none) and
    replace `asset` and `card` if it is better; `settings` are the KEY=VALUE training settings the
    sitting was given beyond its preset (recorded). With a shipped export and `averaged` > 0, the
    average of the two (`averaged` of the sitting's weights, written beside `candidate`) is scored
    too, and the better of the two that pass (mean PSNR) is shipped."""
    shipped = asset if asset.is_file() else None
    bar = f"shipped export (step {load_generator(shipped).step})" if shipped else "warp renderer"
    exports = {"candidate": candidate, "shipped": shipped}
    unaveraged = ""
    if shipped and averaged > 0:
        both = candidate.with_name(f"{candidate.stem}_averaged.safetensors")
        try:
            average(shipped, candidate, both, averaged)
            exports["averaged"] = both
        except InputError as e:  # a model grown in the sitting (a wider refiner) has no average with the old one
            unaveraged = f"; {e}"
    scores = score(data, exports, ks, episodes)
    verdicts = {name: decide(scores[name], scores["shipped"], min_gain_db) for name in exports if name != "shipped"}
    passing = [name for name, (better, _) in verdicts.items() if better]
    chosen = max(passing, key=lambda name: scores[name]["psnr"]) if passing else "candidate"
    why = verdicts["candidate"][1] + unaveraged
    if "averaged" in verdicts:
        why += f"; averaged with them ({averaged:g} of the new): {verdicts['averaged'][1]}"
        why += "; the average shipped" if chosen == "averaged" else ""
    if passing:
        sitting = {"date": time.strftime("%Y-%m-%d"), "minutes": round(minutes, 1),
                   "steps": load_generator(candidate).step, "from": started_from, "ks": ks, "episodes": episodes,
                   "val": scores[chosen], "before": scores["shipped"], "bar": bar, "revision": revision,
                   "settings": settings, "averaged": averaged if chosen == "averaged" else 0.0}
        ship(exports[chosen], asset, (sittings(shipped) if shipped else []) + [sitting])
        text = model_card(asset, data, terms)
        with atomic_path(card) as tmp:
            tmp.write_text(text)
    return Verdict(bool(passing), why, scores[chosen], scores["shipped"], bar)
