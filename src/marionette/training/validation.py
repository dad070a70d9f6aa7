"""Validation during training: self-reenactment on held-out identities (the val split), scored
with the shared metric registry (evaluation/metrics.py: l1, psnr, ssim), next to three baselines
on the same episodes: the first target frame, the target whose landmarks are nearest the driver's
(a pose-matched copy), and the training-free warp renderer (the one to beat; the warp-guided model
starts from it). Also the sample grids of the run folder, and (ours, optional) how much the
generator draws from its targets' pixels: its PSNR minus its PSNR when every target photo is
replaced by flat grey (their landmarks and the warp image kept)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from marionette.data.config import EpisodeConfig
from marionette.data.episodes import Episode, EpisodeDataset
from marionette.evaluation.metrics import Sample, Tools, boxes_psnr, landmark_boxes, measure_sample, summarize
from marionette.landmarks.render import render_landmarks
from marionette.media import atomic_path
from marionette.tensors import to_tensor, to_uint8

METRICS = ("l1", "psnr", "ssim")  # and psnr_mouth: the evaluation's mouth box around the driver's landmarks


class Validator:
    """A fixed list of self-reenactment episodes (K = k each) from one split, and their scores."""

    def __init__(self, root: Path, split: str, episodes: int, k: int, seed: int, batch_size: int,
                 target_use: bool = False) -> None:
        """`target_use`: also score the generator with grey targets (`val/psnr_from_targets`; a second
        generator pass per episode)."""
        self.target_use = target_use
        self.dataset = EpisodeDataset(root, split, EpisodeConfig(k_min=k, k_max=k, flip=False, seed=seed, warp=True))
        self.keys = [(j % len(self.dataset), k, j) for j in range(episodes)]  # (clip index, K, episode seed)
        self.batch_size = batch_size
        self.tools = Tools()
        self.baselines = self._score_baselines()

    def batches(self) -> list[Episode]:
        return [default_collate([self.dataset[key] for key in self.keys[i:i + self.batch_size]])
                for i in range(0, len(self.keys), self.batch_size)]

    def _score(self, outputs: list[torch.Tensor], truths: list[torch.Tensor], landmarks: list[torch.Tensor]
               ) -> dict[str, float]:
        """Means of METRICS and psnr_mouth over (3, S, S) outputs and truths, landmarks (68, 3) the driver's."""
        records = []
        for output, truth, points in zip(outputs, truths, landmarks, strict=True):
            o, t = to_uint8(output), to_uint8(truth)  # (S, S, 3)
            record = measure_sample(Sample(mode="self", output=o, truth=t), METRICS, self.tools)
            record["psnr_mouth"] = boxes_psnr(o, t, landmark_boxes(points.numpy(), "mouth", t.shape))
            records.append(record)
        return summarize(records)

    def _score_baselines(self) -> dict[str, float]:
        first, nearest, warped, truths, landmarks = [], [], [], [], []
        for batch in self.batches():
            offsets = batch.target_landmarks[..., :2] - batch.driver_landmarks[:, None, :, :2]  # (B, K, 68, 2)
            pick = offsets.norm(dim=-1).mean(dim=-1).argmin(dim=1)  # (B,) target nearest the driver's pose
            first += list(batch.target_images[:, 0])
            nearest += list(batch.target_images[torch.arange(len(pick)), pick])
            warped += list(batch.warp_image)
            truths += list(batch.driver_image)
            landmarks += list(batch.driver_landmarks)
        return {**{f"copy_first/{k}": v for k, v in self._score(first, truths, landmarks).items()},
                **{f"copy_nearest/{k}": v for k, v in self._score(nearest, truths, landmarks).items()},
                **{f"warp/{k}": v for k, v in self._score(warped, truths, landmarks).items()}}

    @staticmethod
    def _generate(generator: torch.nn.Module, batch: Episode, device: torch.device) -> torch.Tensor:
        """The generator's (B, 3, S, S) images of a batch (the warp images go to a warp-guided one).
        A generator made for another size s sees the batch as the neural renderer shows it frames:
        images resized to s, landmarks drawn at s, and a warp-guided one's correction (its output
        minus its warp) resized back and added to the full-size warp (inference/neural.py)."""
        size, s = batch.driver_image.shape[-1], generator.config.image_size
        if size == s:
            warp = batch.warp_image.to(device) if generator.config.warp_guided else None
            return generator(batch.target_images.to(device), batch.target_landmark_images.to(device),
                             batch.driver_landmark_image.to(device), warp).image.float().cpu()

        def resized(images: torch.Tensor, side: int, mode: str) -> torch.Tensor:  # (..., 3, H, W) -> (..., 3, side, side)
            flat = images.reshape(-1, *images.shape[-3:])
            out = F.interpolate(flat, size=(side, side), mode=mode, **({} if mode == "area" else {"align_corners": False}))
            return out.reshape(*images.shape[:-2], side, side)

        def drawn(landmarks: torch.Tensor) -> torch.Tensor:  # (..., 68, 3) at S -> (..., 3, s, s) landmark images at s
            points = landmarks.numpy() * (s / size)
            images = np.stack([render_landmarks(p, s) for p in points.reshape(-1, 68, 3)])
            return to_tensor(images.reshape(*points.shape[:-2], s, s, 3))

        warp = resized(batch.warp_image, s, "area").to(device) if generator.config.warp_guided else None
        image = generator(resized(batch.target_images, s, "area").to(device), drawn(batch.target_landmarks).to(device),
                          drawn(batch.driver_landmarks).to(device), warp).image.float().cpu()  # (B, 3, s, s)
        if warp is None:
            return resized(image, size, "bicubic")
        return batch.warp_image + resized(image - warp.cpu(), size, "bicubic")

    @torch.no_grad()
    def __call__(self, generator: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """{val/l1, val/psnr, val/ssim, val/psnr_mouth, copy_first/..., copy_nearest/..., warp/...} of
        `generator` (eval mode), and with `target_use` val/psnr_from_targets: val/psnr minus the PSNR
        of the same generator given flat grey target photos (0: it draws nothing from them)."""
        outputs, blind, truths, landmarks = [], [], [], []
        for batch in self.batches():
            outputs += list(self._generate(generator, batch, device))
            if self.target_use:  # the same episodes, every target photo flat grey (0 in [-1, 1])
                grey = batch._replace(target_images=torch.zeros_like(batch.target_images))
                blind += list(self._generate(generator, grey, device))
            truths += list(batch.driver_image)
            landmarks += list(batch.driver_landmarks)
        scores = {f"val/{k}": v for k, v in self._score(outputs, truths, landmarks).items()}
        if self.target_use:
            scores["val/psnr_from_targets"] = scores["val/psnr"] - self._score(blind, truths, landmarks)["psnr"]
        return {**scores, **self.baselines}

    @torch.no_grad()
    def sample_grid(self, generator: torch.nn.Module, device: torch.device, rows: int = 4) -> np.ndarray:
        """(rows·S, (K + 4)·S, 3) uint8: per episode its K targets | driver landmarks | warp | output | ground truth."""
        batch = default_collate([self.dataset[key] for key in self.keys[:rows]])
        image = self._generate(generator, batch, device)  # (B, 3, S, S)
        row_images = [torch.cat([*targets, landmarks, warp, output, truth], dim=2)  # (3, S, (K + 4)·S)
                      for targets, landmarks, warp, output, truth in zip(
                          batch.target_images, batch.driver_landmark_image, batch.warp_image, image,
                          batch.driver_image, strict=True)]
        return to_uint8(torch.cat(row_images, dim=1))  # (rows·S, (K + 4)·S, 3)


def plot_validation(stats: Path, out: Path, title: str) -> None:
    """Val L1 and PSNR against steps from RUN/stats.jsonl, with both copy baselines, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in map(json.loads, stats.read_text().splitlines()) if "val/l1" in r]
    steps = [r["step"] for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in ((axes[0], "l1", "L1 (lower is better)"), (axes[1], "psnr", "PSNR, dB (higher is better)")):
        ax.plot(steps, [r[f"val/{metric}"] for r in rows], "o-", label="MarioNETte (EMA generator)")
        ax.axhline(rows[0][f"copy_first/{metric}"], color="gray", linestyle="--", label="copy first target")
        ax.axhline(rows[0][f"copy_nearest/{metric}"], color="black", linestyle=":", label="copy nearest-pose target")
        if f"warp/{metric}" in rows[0]:  # runs validated before the warp baseline lack it
            ax.axhline(rows[0][f"warp/{metric}"], color="tab:red", linestyle="-.", label="warp renderer")
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(out) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)
