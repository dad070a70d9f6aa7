"""Checkpoints and the inference export: state dicts and JSON, never pickled objects.

RUN/checkpoints/step_000001000/ holds
  weights.safetensors    generator.*, discriminator.*, ema.* state dicts
  optimizer.safetensors  the tensors of both Adam states (g.*, d.*) and the torch RNG state (rng.*)
  state.json             step, run config, the optimizers' other state and param groups, numpy and
                         python RNG states
A checkpoint folder is written under a hidden temporary name and renamed into place, so a crash
or a failed save never leaves a half-written checkpoint; the last `keep_last` are kept.
The inference export (the EMA generator) is written by inference/export.py.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from marionette.errors import InputError, check_finite
from marionette.media import UMASK
from marionette.training.config import RunConfig

CHECKPOINT = re.compile(r"step_(\d{9})")


@dataclass
class Networks:
    """What a checkpoint restores: the raw (unwrapped) networks and their optimizers."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    ema: torch.nn.Module  # the generator's exponential moving average (exported for inference)
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def checkpoint_name(step: int) -> str:
    return f"step_{step:09d}"


def list_checkpoints(run: Path) -> list[Path]:
    """Finished checkpoints of a run, oldest first (hidden temporaries are not listed)."""
    folder = run / "checkpoints"
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT.fullmatch(p.name)] if folder.is_dir() else []
    return sorted(found)


PARTIAL = (".step_", ".tmp", ".config.json.", ".stats.jsonl.", ".generator.safetensors.")  # temporaries' prefixes


def remove_partial(run: Path) -> list[Path]:
    """Delete what a killed write left behind in the run folder: hidden temporary checkpoint
    folders, atomic_path temporaries and safetensors' own `.tmpXXXXXX` files."""
    partial = [p for folder in (run, run / "checkpoints", run / "export", run / "samples") if folder.is_dir()
               for p in folder.glob(".*") if p.name.startswith(PARTIAL)]
    for path in partial:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return partial


def _split_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Adam's state dict -> ({prefix.param_id.key: tensor}, JSON-ready rest)."""
    state_dict = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        rest[str(param_id)] = {}
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                rest[str(param_id)][key] = value
    return tensors, {"state": rest, "param_groups": state_dict["param_groups"]}


def _join_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor],
                    rest: dict[str, Any]) -> None:
    state = {int(pid): dict(values) for pid, values in rest["state"].items()}
    for name, tensor in tensors.items():
        if name.startswith(f"{prefix}."):
            pid, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(pid), {})[key] = tensor
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in rest["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, gauss_next = random.getstate()
    return tensors, {"numpy": [name, keys.tolist(), pos, has_gauss, gauss],
                     "python": [version, list(state), gauss_next]}


def _set_rng_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, gauss = rest["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, state, gauss_next = rest["python"]
    random.setstate((version, tuple(state), gauss_next))


def _state_dicts(nets: Networks) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().cpu().contiguous()
            for name, module in (("generator", nets.generator), ("discriminator", nets.discriminator), ("ema", nets.ema))
            for key, value in module.state_dict().items()}


def save_checkpoint(run: Path, step: int, config: RunConfig, nets: Networks, keep_last: int) -> Path:
    """Write RUN/checkpoints/step_N atomically, then delete all but the last `keep_last`."""
    folder = run / "checkpoints"
    final = folder / checkpoint_name(step)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{final.name}."))
    try:
        g_tensors, g_rest = _split_optimizer(nets.opt_g, "g")
        d_tensors, d_rest = _split_optimizer(nets.opt_d, "d")
        rng_tensors, rng_rest = _rng_state()
        save_file(_state_dicts(nets), str(tmp / "weights.safetensors"))
        save_file({**g_tensors, **d_tensors, **rng_tensors}, str(tmp / "optimizer.safetensors"))
        state = {"step": step, "config": config.to_dict(), "opt_g": g_rest, "opt_d": d_rest, "rng": rng_rest}
        (tmp / "state.json").write_text(json.dumps(state))
        os.chmod(tmp, 0o777 & ~UMASK)
        if final.exists():  # the same step saved again (a rerun that ends where it started)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:
        raise InputError(f"{final}: cannot save checkpoint ({e}); nothing was written") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(run)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(path: Path) -> dict[str, Any]:
    """state.json of a checkpoint folder (one-line InputError when it is missing or corrupt)."""
    try:
        state = json.loads((path / "state.json").read_text())
        RunConfig.from_dict(state["config"])
        int(state["step"])
        return state
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: corrupt checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                         ) from None


def load_checkpoint(path: Path, nets: Networks) -> int:
    """Restore networks, optimizers and RNG states from a checkpoint folder; return its step."""
    state = read_state(path)
    try:
        weights = load_file(str(path / "weights.safetensors"))
        optimizer = load_file(str(path / "optimizer.safetensors"))
        check_finite(weights, path / "weights.safetensors")
        for name, module in (("generator", nets.generator), ("discriminator", nets.discriminator), ("ema", nets.ema)):
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
        _join_optimizer(nets.opt_g, "g", optimizer, state["opt_g"])
        _join_optimizer(nets.opt_d, "d", optimizer, state["opt_d"])
        _set_rng_state(optimizer, state["rng"])
    except InputError:
        raise
    except Exception as e:  # safetensors, shape and key mismatches raise several types; all mean "cannot use it"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(f"{path}: corrupt or mismatched checkpoint ({type(e).__name__}: {first[:200]})") from None
    return int(state["step"])
