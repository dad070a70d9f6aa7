"""The report's figures on records whose answer is known: paired intervals around a known difference,
as wide as the noise of the paired difference, reproducible; n beside a rate measured on a subset."""

from __future__ import annotations

import numpy as np
import pytest

from marionette.evaluation.metrics import paired_correlation, root_mean_square
from marionette.evaluation.report import (
    _markdown,
    measured_counts,
    paired_bootstrap,
    renderer_differences,
    resolution,
    summarize_results,
)


def _records(shift: float, noise: float, episodes: int = 30, seed: int = 0) -> list[dict]:
    """copy and warp on the same episodes: episode difficulty varies by 6 dB, warp = copy + shift +
    noise of its own."""
    rng = np.random.default_rng(seed)
    hard = rng.normal(25, 6, episodes)  # per-episode PSNR of copy
    recall = [None if e % 3 else float(e % 2) for e in range(episodes)]  # closed eyes in every third driver
    records = []
    for name, psnr in (("copy", hard), ("warp", hard + shift + rng.normal(0, noise, episodes))):
        records += [{"renderer": name, "shots": 1, "mode": "self", "episode": e,
                     "metrics": {"psnr": float(psnr[e]), "closed_eye_recall": recall[e]}} for e in range(episodes)]
    return records


def test_a_paired_difference_is_resolved_below_the_episodes_spread():
    """Episodes vary by 6 dB, but the difference of the pair only by 1 dB: the interval is about
    +-1.96 / sqrt(30) dB = +-0.36 dB around the difference, and excludes 0."""
    differences = renderer_differences(_records(shift=1.0, noise=1.0))
    difference, low, high, n = differences["self"]["psnr"]["warp - copy"]["1"]
    assert n == 30 and low < difference < high and low > 0
    assert (high - low) / 2 == pytest.approx(1.96 / np.sqrt(30), rel=0.35)
    exact = renderer_differences(_records(shift=1.0, noise=0.0))["self"]["psnr"]["warp - copy"]["1"]
    assert exact[:3] == pytest.approx([1.0, 1.0, 1.0])  # the same 1 dB on every episode: no doubt left
    same = renderer_differences(_records(shift=0.0, noise=1.0))["self"]["psnr"]["warp - copy"]["1"]
    assert same[1] < 0 < same[2]  # no difference: the interval holds 0
    assert renderer_differences(_records(shift=1.0, noise=1.0)) == differences  # fixed seed: reproducible


def test_resampled_figures_are_the_metrics_own_reductions():
    rng = np.random.default_rng(1)
    a = [float(x) for x in rng.normal(0, 1, 20)]
    b = [3 * x for x in a]
    difference, low, high = paired_bootstrap(a, b, "prmse", [0])  # RMS: exactly 3x
    assert difference == pytest.approx(2 * root_mean_square(a)) and 0 < low < difference < high
    pairs = [[x, x] for x in a]  # perfectly correlated: every resample's r is 1
    assert paired_bootstrap(pairs, pairs, "blink_correlation", [0]) == pytest.approx((0.0, 0.0, 0.0))
    assert paired_correlation(pairs) == pytest.approx(1.0)


def test_rates_show_their_n_and_the_report_says_what_it_resolves():
    records = _records(shift=1.0, noise=1.0)
    table, counts, differences = summarize_results(records), measured_counts(records), renderer_differences(records)
    assert counts["self"]["closed_eye_recall"]["copy"]["1"] == 10 and counts["self"]["psnr"]["copy"]["1"] == 30
    settings = {"dataset": "d", "split": "test", "seed": 0, "judge": "j", "cross_mode": "relative", "alpha": 1.0}
    md = _markdown(table, counts, differences, settings, [], [])
    assert "| closed_eye_recall ↑ | 0.500 (n=10) | 0.500 (n=10) |" in md  # followed in 3, 9, .., 27: 5 of 10
    assert "| psnr ↑ | " in md and "(n=30)" not in md  # measured on every episode: no n needed
    half = (differences["self"]["psnr"]["warp - copy"]["1"][2] - differences["self"]["psnr"]["warp - copy"]["1"][1]) / 2
    line, = resolution(differences)  # one frame's PSNR only: no videos here
    assert line.startswith("resolution of psnr: with n = 30 episodes") and f"±{half:.2f} dB" in line
    assert f"about {int(np.ceil(30 * (half / 0.3) ** 2))} episodes" in line
    assert "**+" in md  # the warp's gain, its interval clear of 0, in bold
