"""Shared fixtures: small real datasets and a ready project folder like the demo's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def breast_cancer_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder (CSV files, ONNX models, bastion.yaml) built as `bastion demo` does."""
    pytest.importorskip("skl2onnx")
    from bastion.demo import _breast_cancer, _write_project

    folder = tmp_path_factory.mktemp("project") / "breast_cancer"
    _write_project(folder, _breast_cancer())
    return folder


@pytest.fixture
def project(breast_cancer_project: Path, tmp_path: Path) -> Path:
    """A private copy of the project that a test may break."""
    target = tmp_path / "project"
    shutil.copytree(breast_cancer_project, target)
    return target
