"""Losses: scale-map focal loss (a departure from Eq. 4's BCE, see MODEL_CARD.md) and L_keypoint
(Eq. 7) through a differentiable scale-adaptive soft-argmax that matches the numpy one."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def soft_argmax_in_windows(heatmaps: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Eq. 5-6 in torch: heatmaps (F, K, H, W) logits, windows (F, 4) inclusive cell windows
    [x1, y1, x2, y2] -> keypoints (F, K, 2) [x, y] in cell coordinates, differentiable."""
    num_faces, _, height, width = heatmaps.shape
    xs = torch.arange(width, device=heatmaps.device, dtype=torch.float32)
    ys = torch.arange(height, device=heatmaps.device, dtype=torch.float32)
    x1, y1, x2, y2 = (windows[:, i].view(-1, 1, 1, 1).float() for i in range(4))
    inside = (xs.view(1, 1, 1, -1) >= x1) & (xs.view(1, 1, 1, -1) <= x2)
    inside = inside & (ys.view(1, 1, -1, 1) >= y1) & (ys.view(1, 1, -1, 1) <= y2)
    logits = heatmaps.float().masked_fill(~inside, float("-inf"))
    probabilities = torch.softmax(logits.flatten(2), dim=2).view_as(logits)
    x = (probabilities.sum(dim=2) * xs).sum(dim=2)
    y = (probabilities.sum(dim=3) * ys).sum(dim=2)
    return torch.stack([x, y], dim=-1)


def keypoint_loss(predicted: torch.Tensor, target: torch.Tensor, window_sides: torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 7 on window-normalised coordinates (Eq. 6's Psi): mean over faces of
    1/(2K) sum_c ||Psi_c - G_c||^2, with both divided by the window side (cells) of each face.

    predicted, target: (F, K, 2) in cells; window_sides: (F,) cells; mask: (F, K) bool, the
    landmarks that count (a missing or guessed point costs nothing); the mean runs over them."""
    if predicted.shape[0] == 0:
        return predicted.sum() * 0.0
    error = (predicted - target) / window_sides.view(-1, 1, 1)
    squared = (error**2).sum(dim=2)
    if mask is None:
        return squared.mean(dim=1).div(2).mean()
    weights = mask.to(squared.dtype)
    return (squared * weights).sum().div(2) / weights.sum().clamp(min=1.0)


def scale_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0,
                     ignore: torch.Tensor | None = None) -> torch.Tensor:
    """Penalty-reduced focal loss (CornerNet/CenterNet), per positive, for the scale map and the
    auxiliary landmark heatmaps.

    logits, target: (N, C, H, W); target is 1 at each positive cell and a Gaussian around it
    (Eq. 3 for the scale map), which lowers the penalty of near-misses. ignore: (N, H, W), 1 where
    no cell may be called background (ignore regions: unlabelled or doubtful faces); positives
    there still count."""
    logits = logits.float()
    positive = target.ge(1.0 - 1e-6).float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = log_p.exp()
    positive_term = positive * (1 - p).pow(alpha) * log_p
    negative_term = (1 - positive) * (1 - target).pow(beta) * p.pow(alpha) * log_not_p
    if ignore is not None:
        negative_term = negative_term * (1 - ignore.to(negative_term.dtype)).unsqueeze(1)
    return -(positive_term.sum() + negative_term.sum()) / positive.sum().clamp(min=1.0)


def scale_bce_loss(logits: torch.Tensor, target: torch.Tensor, weight: float = 10000.0,
                   ignore: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 4 as in the paper: binary cross entropy averaged over all |M| cells, times the paper's
    weight of 10000; cells under `ignore` (N, H, W) cost nothing unless they are positive."""
    per_cell = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    if ignore is not None:
        negative = target.lt(1.0 - 1e-6).to(per_cell.dtype)
        per_cell = per_cell * (1 - negative * ignore.to(per_cell.dtype).unsqueeze(1))
    return weight * per_cell.mean()
