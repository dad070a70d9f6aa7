"""tools/gpu_bench.sh on CPU with the tiny preset: it writes the model benchmark table (ceilings,
the FOMM reference, one row per batch size) under $OUT; tools/gpu_bench_mesh.sh on CPU: the
preprocess benchmark's table on the torch face mesh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.subprocess
def test_gpu_bench_script_on_cpu_with_the_tiny_preset(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "DEVICE": "cpu", "PRESET": "tiny", "KS": "2",
           "PRECISION": "fp32", "BATCH": "1,3", "ROUNDS": "2", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(REPO / "tools" / "gpu_bench.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = (out / "bench_model.md").read_text()
    assert "| fp32 |" in text and "3x3 conv" in text  # the same run's ceilings
    assert "| FOMM (issue 18; time scaled to this machine) |" in text
    rows = [line for line in text.splitlines() if line.startswith("| marionette `tiny` | 2 |")]
    assert [row.split(" | ")[2] for row in rows] == ["1", "3"]  # one row per batch size
    assert done.stdout.count("| marionette `tiny` |") == 2  # the table is printed too


@pytest.mark.subprocess
def test_gpu_bench_script_names_a_missing_device(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "DEVICE": "mps", "PRESET": "tiny"}
    done = subprocess.run([str(REPO / "tools" / "gpu_bench.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "device 'mps' is not available" in done.stderr
    assert not (tmp_path / "bench_model.md").exists()


@pytest.mark.subprocess
def test_gpu_bench_mesh_script_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "DEVICE": "cpu", "ROUNDS": "1", "REPEATS": "1",
           "WORKERS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(REPO / "tools" / "gpu_bench_mesh.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = (out / "bench_mesh.md").read_text()
    assert text.count("## round") == 1 and "load average after:" in text  # DEVICE=cpu: the CPU round alone
    assert "| decode + face mesh tracking (torch on cpu, 1 process)" in text
    assert "| `marionette preprocess`, 1 worker(s), 6 clips" in text


@pytest.mark.subprocess
def test_gpu_bench_mesh_script_names_a_missing_device(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "DEVICE": "mps"}
    done = subprocess.run([str(REPO / "tools" / "gpu_bench_mesh.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "device 'mps' is not available" in done.stderr
    assert not (tmp_path / "bench_mesh.md").exists()
