"""load_model: format by content, fail-closed pickle handling, folders, and light imports."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from bastion.exceptions import ConfigError, ModelError, UnsafeArtifactError
from bastion.models.formats import sha256_file, sha256_path
from bastion.models.loading import load_model


@pytest.mark.parametrize("compress", [0, 3, "gzip", "lzma"])
def test_clean_joblib_loads_through_the_restricted_unpickler(
    tmp_path: Path,
    cancer: tuple[pd.DataFrame, pd.Series],
    cancer_pipeline: Pipeline,
    compress: Any,
) -> None:
    X, _ = cancer
    path = tmp_path / "model.onnx"  # a pickle under an innocent name: found by content
    joblib.dump(cancer_pipeline, path, compress=compress)
    model = load_model(path)
    assert model.info.format == "pickle"
    assert model.info.trusted_override is False
    scan = model.info.details["scan"]
    assert scan["verdict"] == "safe"
    assert scan["sha256"] == sha256_file(path)
    assert scan["override"] is False
    np.testing.assert_array_equal(model.predict(X), cancer_pipeline.predict(X))


def test_pickle_refusal_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            import os

            return (os.mkdir, (str(marker),))

    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(Payload(), protocol=4))
    with pytest.raises(UnsafeArtifactError) as info:
        load_model(path)
    assert "verdict unsafe" in str(info.value)
    assert "SC002" in str(info.value)
    assert "trust_pickle=True" in str(info.value)
    assert isinstance(info.value, PermissionError)
    assert not marker.exists()


def test_a_gap_between_scan_and_load_cannot_run_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if the scanner were fooled, the loader's unpickler admits only allowlisted names."""
    from bastion.supply import scanner
    from bastion.supply.results import FileScan

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            import os

            return (os.mkdir, (str(marker),))

    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(Payload(), protocol=4))

    def fooled(data: Any, name: str, **_: Any) -> FileScan:
        return FileScan(path=name, format="pickle", sha256="0" * 64)

    monkeypatch.setattr(scanner, "scan_bytes", fooled)
    monkeypatch.setattr("bastion.supply.scan_bytes", fooled)
    with pytest.raises(UnsafeArtifactError, match=r"posix\.mkdir|os\.mkdir"):
        load_model(path)
    assert not marker.exists()


class _Unlisted:
    """A model class outside the allowlist (a user's own wrapper)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def predict(self, X: Any) -> Any:
        return self.inner.predict(X)


def test_unlisted_classes_need_the_allowlist_or_trust(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    from sklearn.linear_model import LogisticRegression

    from bastion.supply import Allowlist

    X, y = cancer
    inner = LogisticRegression(max_iter=5000).fit(X.to_numpy(), y)
    path = tmp_path / "model.joblib"
    joblib.dump(_Unlisted(inner), path, compress=3)
    qualname = f"{_Unlisted.__module__}._Unlisted"
    expected = rf"\(verdict suspicious\): SC001 .*{re.escape(qualname)}"
    with pytest.raises(UnsafeArtifactError, match=expected):
        load_model(path)
    listed = load_model(path, allow=Allowlist.of([qualname]))
    assert listed.info.trusted_override is False
    np.testing.assert_array_equal(listed.predict(X), inner.predict(X.to_numpy()))
    trusted = load_model(path, trust_pickle=True, name="cancer")
    assert trusted.info.trusted_override is True
    assert trusted.info.to_dict()["trusted_override"] is True
    assert trusted.info.details["scan"]["verdict"] == "suspicious"
    assert trusted.info.details["scan"]["override"] is True
    assert trusted.info.name == "cancer"
    assert trusted.info.sha256 == sha256_file(path)
    np.testing.assert_array_equal(trusted.predict(X), inner.predict(X.to_numpy()))


def test_trusted_pickle_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"not": "a model"}, protocol=4))
    with pytest.raises(ModelError, match=r"builtins\.dict, which is neither"):
        load_model(path, trust_pickle=True)


def test_onnx_and_folder(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Pipeline
) -> None:
    pytest.importorskip("onnxruntime")
    from skl2onnx import to_onnx

    X, _ = cancer
    folder = tmp_path / "release"
    folder.mkdir()
    proto = to_onnx(cancer_pipeline, X.to_numpy(np.float32)[:1], options={"zipmap": False})
    (folder / "model.bin").write_bytes(proto.SerializeToString())  # no .onnx extension
    (folder / "README.txt").write_text("side file, not a model")
    by_file = load_model(folder / "model.bin")
    by_folder = load_model(folder)
    assert by_file.info.format == by_folder.info.format == "onnx"
    assert by_file.info.sha256 == sha256_file(folder / "model.bin")
    assert by_folder.info.sha256 == sha256_path(folder) != by_file.info.sha256
    np.testing.assert_array_equal(by_folder.predict(X), cancer_pipeline.predict(X))


def test_folder_with_two_models_is_ambiguous(tmp_path: Path, cancer_pipeline: Pipeline) -> None:
    joblib.dump(cancer_pipeline, tmp_path / "a.joblib")
    joblib.dump(cancer_pipeline, tmp_path / "b.joblib")
    with pytest.raises(ModelError, match="exactly one model file; found 2"):
        load_model(tmp_path, trust_pickle=True)


def test_torch_export_and_safetensors(
    tmp_path: Path,
    pt2_file: Path,
    torch_mlp: Any,
    cancer_scaled: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    X, _ = cancer_scaled
    with torch.no_grad():
        expected = torch_mlp(torch.tensor(X)).argmax(dim=1).numpy()
    exported = load_model(pt2_file, classes=[0, 1])
    assert exported.info.format == "torch-export"
    assert exported.info.trusted_override is False
    np.testing.assert_array_equal(exported.predict(X), expected)

    (tmp_path / "bastion_loading_nets.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(),"
        " torch.nn.Linear(16, 2))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = tmp_path / "w.safetensors"
    save_file(torch_mlp.state_dict(), weights)
    with pytest.raises(ConfigError, match="factory="):
        load_model(weights)
    model = load_model(weights, factory="bastion_loading_nets:make")
    assert model.info.format == "safetensors"
    assert model.info.details["factory"] == "bastion_loading_nets:make"
    np.testing.assert_array_equal(model.predict(X), expected)


def test_torch_save_is_pickle_family(tmp_path: Path, torch_mlp: Any) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save(torch_mlp, path)
    model = load_model(path, classes=[0, 1])  # torch.nn classes only: a clean scan
    assert model.info.trusted_override is False
    assert model.info.format == "torch-pickle"
    assert model.info.details["scan"]["verdict"] == "safe"


def test_device_places_torch_models_and_refuses_cuda_for_others(
    tmp_path: Path, torch_mlp: Any, cancer_pipeline: Pipeline
) -> None:
    """``device``: auto runs on the CPU when torch sees no CUDA device; a torch model asked
    for a device torch does not see, or another model asked for CUDA, is a clear error."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save(torch_mlp, path)
    auto = load_model(path, classes=[0, 1], device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert auto.device.type == expected  # type: ignore[attr-defined]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA device here; use cpu or auto"):
            load_model(path, classes=[0, 1], device="cuda")
    with pytest.raises(ConfigError, match="expected cpu, cuda, cuda:N, auto, mps or xpu"):
        load_model(path, classes=[0, 1], device="gpu")
    joblib_path = tmp_path / "m.joblib"
    joblib.dump(cancer_pipeline, joblib_path)
    assert load_model(joblib_path, device="auto").info.format == "pickle"
    with pytest.raises(ConfigError, match=r"applies to torch models; 'm\.joblib' is pickle"):
        load_model(joblib_path, device="cuda:0")


def test_an_estimator_refuses_classes_it_does_not_have_and_input_shapes(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Pipeline
) -> None:
    """``--classes 1,0`` / ``--input-shape`` on a pickled estimator were dropped silently:
    the attack ran as if the classes agreed."""
    X, _ = cancer
    path = tmp_path / "m.joblib"
    joblib.dump(cancer_pipeline, path)
    own = cancer_pipeline.classes_.tolist()
    same = load_model(path, classes=own)  # the estimator's own classes: accepted
    load_model(path, classes=[str(c) for c in own])  # a policy's text labels, as for ONNX
    np.testing.assert_array_equal(same.predict(X), cancer_pipeline.predict(X))
    for wrong in (own[::-1], [*own, 2], own[:1]):
        with pytest.raises(ConfigError, match=r"do not match estimator 'm\.joblib'"):
            load_model(path, classes=wrong)
    with pytest.raises(ConfigError, match="input_shape applies to torch and ONNX models"):
        load_model(path, input_shape=(1, 5, 6))
    # labels that floats or a lenient parse merge are still two, and a reversed order of
    # them is refused (from a review: both were accepted as matching)
    X2 = X.to_numpy()[:, :2]
    for pair in (["007", "7"], [2**53, 2**53 + 1]):
        labels = np.where(cancer[1].to_numpy() == 1, pair[1], pair[0])
        estimator = LogisticRegression(max_iter=2000).fit(X2, labels)
        joblib.dump(estimator, path)
        assert load_model(path, classes=estimator.classes_.tolist()).classes_ is not None
        with pytest.raises(ConfigError, match="do not match estimator"):
            load_model(path, classes=estimator.classes_.tolist()[::-1])


def test_labels_are_one_when_equal_exactly_or_a_text_spells_the_number() -> None:
    from decimal import Decimal

    from bastion.models.base import same_label

    # a float label is the float nearest the text: "0.10" and "1e-1" are 0.1 (a review saw
    # --classes 0.10,0.20 refused for an estimator fitted on floats)
    one = [("0", 0), (0.0, 0), (False, 0), ("1", 1.0), ("1.0", 1), (np.float32(0.1), "0.1"),
           ("-1", -1), (np.int64(7), "7"), ("a", "a"), ("0.10", 0.1), ("1e-1", 0.1),
           (Decimal("1.0"), 1)]  # fmt: skip
    two = [("007", "7"), ("007", 7), (2**53, 2**53 + 1), (np.int64(10**17), 10**17 + 1),
           ("1_0", 10), (" 1", 1), ("a", "b"), ("0", 1), (1.5, "1.50001"), ("\u0663", 3),
           ("0.3", 0.30000000000000004)]  # fmt: skip
    assert all(same_label(a, b) and same_label(b, a) for a, b in one)
    assert not any(same_label(a, b) or same_label(b, a) for a, b in two)


def test_an_exported_program_moves_with_the_tensors_it_creates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From a review: ``nn.Module.to`` moved a ``.pt2`` model's parameters but not the device
    its forward pass creates tensors on (recorded at export), so every forward pass on
    another device failed. Checked on ``meta`` (this machine has no second device)."""
    torch = pytest.importorskip("torch")
    from bastion.models.loading import _export_on

    class MakesATensor(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)

        def forward(self, x: Any) -> Any:
            return self.linear(x) + torch.arange(2, dtype=x.dtype)

    program = torch.export.export(MakesATensor().eval(), (torch.zeros(4, 3),))
    assert _export_on(program, "cpu") is program
    moved = program.module().to("meta")
    with pytest.raises(RuntimeError):  # what plain .to() left behind
        moved(torch.zeros(4, 3, device="meta"))
    import bastion.models.torch as torch_models

    monkeypatch.setattr(torch_models, "resolve_device", lambda device: device)
    module = _export_on(program, "meta").module()
    assert module(torch.zeros(4, 3, device="meta")).device.type == "meta"


def test_torchscript_and_unknown_are_refused(tmp_path: Path) -> None:
    ts = tmp_path / "model.pt"
    with zipfile.ZipFile(ts, "w") as zf:
        for member in ("m/data.pkl", "m/constants.pkl", "m/code/__torch__.py"):
            zf.writestr(member, b"x")
    with pytest.raises(UnsafeArtifactError, match="TorchScript"):
        load_model(ts, trust_pickle=True)
    unknown = tmp_path / "model.onnx"
    unknown.write_text("hello")
    with pytest.raises(ModelError, match="cannot tell the format"):
        load_model(unknown)


def test_argument_errors(tmp_path: Path, cancer_pipeline: Pipeline) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump(cancer_pipeline, path)
    with pytest.raises(ConfigError, match="exactly one of path= or remote="):
        load_model()
    with pytest.raises(ConfigError, match="format must be"):
        load_model(path, format="keras")
    with pytest.raises(ModelError, match="declared 'onnx' but its content is 'pickle'"):
        load_model(path, format="onnx")
    with pytest.raises(ConfigError, match="factory= applies to safetensors"):
        load_model(path, factory="x:y", trust_pickle=True)
    with pytest.raises(ConfigError, match="proba_output= applies to ONNX models"):
        load_model(path, proba_output="probabilities", trust_pickle=True)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(ConfigError, match="RemoteEndpoint"):
        load_model(remote="http://example")


def test_importing_the_loader_stays_light() -> None:
    code = (
        "import sys, bastion, bastion.models.loading, bastion.models.formats, "
        "bastion.models.sklearn, bastion.models.callable, bastion.models.onnx, "
        "bastion.models.torch, bastion.models.remote, bastion.gateway, bastion.gateway.oip\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'onnx', 'fastapi', 'uvicorn', 'httpx', "
        "'matplotlib', 'safetensors', 'skl2onnx') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
