"""Two Gloo processes under torchrun train a few steps on CPU; the generator, discriminator and
EMA parameters stay identical across ranks (separate DDP wrappers sync G and D)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = '''
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from marionette.training import distributed
from marionette.training.config import run_config
from marionette.training.loop import train

config = run_config("tiny", ["loss.perceptual_weights=random", "steps=3", "batch_size=2", "episodes.k_max=2",
                             "val_every=0", "checkpoint_every=3", "workers=0", "log_every=1"])
result = train(Path(sys.argv[1]), Path(sys.argv[2]), config, progress=False)
nets = result.networks
flat = torch.cat([p.detach().flatten() for m in (nets.generator, nets.discriminator, nets.ema) for p in m.parameters()])
gathered = [torch.empty_like(flat) for _ in range(distributed.world_size())]
dist.all_gather(gathered, flat)
if distributed.is_main():
    same = all(torch.equal(gathered[0], g) for g in gathered[1:])
    Path(sys.argv[2], "ranks.txt").write_text(f"{distributed.world_size()} {same}")
distributed.shutdown()
'''


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_gloo_ranks_keep_identical_parameters(train_dataset: Path, tmp_path: Path) -> None:
    data, run = train_dataset, tmp_path / "run"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(data), str(run)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "ranks.txt").read_text() == "2 True"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_000000003"]
