"""Sigmoid focal loss for multi-label classification (Lin et al. 2017; the paper uses gamma = 2).

For every (person, class) pair with logit x, target y in {0, 1} and p = sigmoid(x):

    p_t   = p       if y = 1 else 1 - p
    alpha_t = alpha if y = 1 else 1 - alpha          (alpha=None: alpha_t = 1)
    FL    = -alpha_t * (1 - p_t)^gamma * log(p_t)

and the loss is the mean over all P x K pairs. ``-log(p_t)`` is computed as the binary cross
entropy with logits (log-sum-exp form), so large |x| neither overflows nor gives log(0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0,
                       alpha: float | None = None) -> torch.Tensor:
    """logits (P, K) float, targets (P, K) 0/1 float -> scalar mean focal loss."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    targets = targets.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log(p_t)
    p = torch.sigmoid(logits)
    one_minus_p_t = p * (1 - targets) + (1 - p) * targets
    loss = ce * one_minus_p_t.pow(gamma) if gamma != 0 else ce
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean()
