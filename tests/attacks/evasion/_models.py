"""Small torch models trained in seconds on data shipped with scikit-learn (white-box tests).

Models take raw inputs (digits pixels in 0..16, breast-cancer features in their own units)
and normalise inside the module, so eps is measured in the data's units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from torch import nn


@dataclass(frozen=True)
class Split:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def digits() -> Split:
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return Split(Xtr.astype(np.float64), ytr, Xte.astype(np.float64), yte)


class Affine(nn.Module):
    """Fixed input normalisation ``(x - shift) / scale`` (buffers, not parameters)."""

    def __init__(self, shift: np.ndarray | float, scale: np.ndarray | float) -> None:
        super().__init__()
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


def mlp(n_in: int, n_out: int, hidden: int = 64, shift: Any = 0.0, scale: Any = 16.0) -> nn.Module:
    return nn.Sequential(
        Affine(shift, scale),
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_out),
    )


def cnn() -> nn.Module:
    return nn.Sequential(
        Affine(0.0, 16.0),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def _pgd_train_batch(
    net: nn.Module, xb: torch.Tensor, yb: torch.Tensor, eps: float, lo: float, hi: float
) -> torch.Tensor:
    """Madry-style training points: 7 steps of 2.5 * eps / 7 from a random start."""
    steps, alpha = 7, 2.5 * eps / 7
    x = (xb + eps * (2 * torch.rand_like(xb) - 1)).clamp(lo, hi)
    for _ in range(steps):
        x.requires_grad_(True)
        loss = nn.functional.cross_entropy(net(x), yb)
        (g,) = torch.autograd.grad(loss, x)
        x = torch.min(torch.max(x.detach() + alpha * g.sign(), xb - eps), xb + eps).clamp(lo, hi)
    return x.detach()


def train(
    net: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 20,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
    adversarial_eps: float | None = None,
    bounds: tuple[float, float] = (0.0, 16.0),
    lr: float = 3e-3,
    batch: int = 128,
) -> nn.Module:
    """Mini-batch Adam; PGD adversarial training when ``adversarial_eps`` is given."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            m.reset_parameters()
    xt = torch.as_tensor(X, dtype=torch.float32)
    if input_shape is not None:
        xt = xt.reshape(len(xt), *input_shape)
    yt = torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch):
            rows = order[start : start + batch]
            xb, yb = xt[rows], yt[rows]
            if adversarial_eps is not None:
                net.eval()
                xb = _pgd_train_batch(net, xb, yb, adversarial_eps, *bounds)
                net.train()
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    net.eval()
    return net


def breast_cancer(integer: tuple[int, ...] = (), seed: int = 0) -> Split:
    """Breast cancer, with the ``integer`` columns rounded to whole numbers."""
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float64).copy()
    for col in integer:
        X[:, col] = np.rint(X[:, col])
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    return Split(Xtr, ytr, Xte, yte)
