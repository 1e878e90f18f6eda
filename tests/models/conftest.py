"""Shared fixtures: breast cancer data and models fitted on it (fixed seeds, built once)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="session")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def cancer_pipeline(cancer: tuple[pd.DataFrame, pd.Series]) -> Pipeline:
    X, y = cancer
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


@pytest.fixture(scope="session")
def cancer_lr_array(cancer: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    """A model fitted on a plain array (no feature names)."""
    X, y = cancer
    Xs = (X - X.mean()) / X.std()
    return LogisticRegression(max_iter=1000).fit(Xs.to_numpy(), y.to_numpy())


@pytest.fixture(scope="session")
def cancer_scaled(cancer: tuple[pd.DataFrame, pd.Series]) -> tuple[np.ndarray, np.ndarray]:
    X, y = cancer
    Xs = ((X - X.mean()) / X.std()).to_numpy(np.float32)
    return Xs, y.to_numpy()


@pytest.fixture(scope="session")
def torch_mlp(cancer_scaled: tuple[np.ndarray, np.ndarray]) -> Any:
    """A tiny MLP trained for a few full-batch steps (enough to beat chance)."""
    torch = pytest.importorskip("torch")
    X, y = cancer_scaled
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    xt, yt = torch.tensor(X), torch.tensor(y).long()
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    net.eval()
    return net


@pytest.fixture(scope="session")
def pt2_file(tmp_path_factory: pytest.TempPathFactory, torch_mlp: Any) -> Any:
    """The MLP exported with torch.export (dynamic batch) and saved as a .pt2 archive."""
    torch = pytest.importorskip("torch")
    example = (torch.zeros(4, 30),)
    batch = torch.export.Dim("batch")
    program = torch.export.export(torch_mlp, example, dynamic_shapes=({0: batch},))
    path = tmp_path_factory.mktemp("pt2") / "mlp.pt2"
    torch.export.save(program, path)
    return path
