"""OnnxAdapter: skl2onnx classifiers (ZipMap on and off) and the external-data path check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from bastion.exceptions import (
    CapabilityError,
    ModelError,
    ModelOutputError,
    UnsafeArtifactError,
)
from bastion.models.base import Capability
from bastion.models.formats import sha256_file

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")

from onnx import TensorProto, helper  # noqa: E402

from bastion.models.onnx import OnnxAdapter, check_external_data  # noqa: E402


def _convert(pipeline: Pipeline, path: Path, zipmap: bool) -> Path:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    proto = convert_sklearn(
        pipeline,
        initial_types=[("input", FloatTensorType([None, 30]))],
        options={"zipmap": zipmap},
    )
    onnx.save_model(proto, path)
    return path


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "tensor"])
def test_skl2onnx_classifier_matches_sklearn(
    tmp_path: Path,
    cancer: tuple[pd.DataFrame, pd.Series],
    cancer_pipeline: Pipeline,
    zipmap: bool,
) -> None:
    X, _ = cancer
    path = _convert(cancer_pipeline, tmp_path / "cancer.onnx", zipmap)
    model = OnnxAdapter.from_file(path)
    assert model.capabilities == frozenset({Capability.PREDICT, Capability.PREDICT_PROBA})
    assert model.classes_.tolist() == [0, 1]  # from the graph, not given
    assert model.info.sha256 == sha256_file(path)
    assert model.info.format == "onnx"
    # The ONNX graph computes in float32: labels agree except where float32 rounding flips
    # a probability sitting on 0.5, and probabilities agree to float32 precision.
    expected = cancer_pipeline.predict_proba(X)
    np.testing.assert_allclose(model.predict_proba(X), expected, atol=1e-5)
    np.testing.assert_array_equal(model.predict(X), cancer_pipeline.predict(X))
    np.testing.assert_array_equal(model.predict(X.to_numpy()), cancer_pipeline.predict(X))
    assert model.n_queries == 3 * len(X)


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "tensor"])
def test_given_classes_must_agree_with_the_graphs(
    tmp_path: Path,
    cancer: tuple[pd.DataFrame, pd.Series],
    cancer_pipeline: Pipeline,
    zipmap: bool,
) -> None:
    """Classes in another order than the graph's relabelled the probability columns (the
    label output stayed right): Square pushed the wrong class and a fragile model passed.
    The same labels as text ("0" from a policy for the graph's 0) are the graph's; a ZipMap
    model given them failed with a bare KeyError."""
    X, _ = cancer
    path = _convert(cancer_pipeline, tmp_path / "cancer.onnx", zipmap)
    with pytest.raises(ModelError, match=r"classes \[1, 0\] differ from .* declares \[0, 1\]"):
        OnnxAdapter.from_file(path, classes=[1, 0])
    as_text = OnnxAdapter.from_file(path, classes=["0", "1"])
    assert as_text.classes_.tolist() == [0, 1]
    # a model fitted on float or bool labels declares 0 and 1: its own classes_ are the same
    for own in ([0.0, 1.0], [False, True], np.array([0, 1], dtype=np.int64)):
        assert OnnxAdapter.from_file(path, classes=own).classes_.tolist() == [0, 1]
    np.testing.assert_allclose(
        as_text.predict_proba(X), cancer_pipeline.predict_proba(X), atol=1e-5
    )


def test_external_data_inside_the_folder_loads(tmp_path: Path) -> None:
    path = _model_with_external(tmp_path, "weights.bin")
    weights = path.parent / "weights.bin"
    weights.write_bytes(np.array([0.25, 0.5], dtype=np.float32).tobytes())
    model = OnnxAdapter.from_file(path, classes=["a", "b"])
    assert model.info.details["external_data"] == {"weights.bin": sha256_file(weights)}
    X = np.array([[0.0, 0.5], [0.5, 0.0]], dtype=np.float32)
    # The graph adds the external tensor: the data came from weights.bin.
    np.testing.assert_allclose(model.predict_proba(X), X + np.array([0.25, 0.5]))
    assert model.predict(X).tolist() == ["b", "a"]


def _model_with_external(tmp_path: Path, location: str) -> Path:
    """An Identity-plus-Add model whose one initializer names ``location`` as its data."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "8")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[weight],
    )
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.fixture
def ort_must_not_load(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail the test if onnxruntime is ever asked to open a session."""
    import onnxruntime

    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise AssertionError("onnxruntime.InferenceSession was called")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    return calls


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("../outside.bin", "outside the model folder"),
        ("sub/../../outside.bin", "outside the model folder"),
        ("/etc/passwd", "absolute paths are refused"),
        ("C:\\Windows\\win.ini", "absolute paths are refused"),
        ("", "empty or malformed"),
    ],
)
def test_escaping_external_data_is_refused_before_onnxruntime(
    tmp_path: Path, location: str, message: str, ort_must_not_load: list[Any]
) -> None:
    (tmp_path / "outside.bin").write_bytes(b"\0" * 8)
    path = _model_with_external(tmp_path, location)
    with pytest.raises(UnsafeArtifactError, match=message):
        OnnxAdapter.from_file(path)
    assert ort_must_not_load == []


def test_symlink_leaving_the_folder_is_refused(
    tmp_path: Path, ort_must_not_load: list[Any]
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 8)
    path = _model_with_external(tmp_path, "weights.bin")
    os.symlink(secret, path.parent / "weights.bin")
    with pytest.raises(UnsafeArtifactError, match="resolves to"):
        OnnxAdapter.from_file(path)
    assert ort_must_not_load == []


def test_check_external_data_accepts_inside_paths(tmp_path: Path) -> None:
    path = _model_with_external(tmp_path, "sub/../weights.bin")
    proto = onnx.load(path, load_external_data=False)
    assert check_external_data(proto, path.parent) == ["sub/../weights.bin"]


def test_regressor_like_graph_without_classes(tmp_path: Path) -> None:
    """A graph with only a float (rows, 2) output needs classes to produce labels."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["probabilities"], axis=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 2])],
        [helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, [None, 2])],
    )
    path = tmp_path / "softmax.onnx"
    onnx.save_model(helper.make_model(graph), path)
    with pytest.raises(ModelError, match="pass classes="):
        OnnxAdapter.from_file(path)
    model = OnnxAdapter.from_file(path, classes=["a", "b"])
    X = np.array([[0.0, 1.0], [2.0, -1.0]])
    assert model.predict(X).tolist() == ["b", "a"]
    expected = np.exp(X) / np.exp(X).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(X), expected)


def test_one_probability_per_row_is_the_second_class(tmp_path: Path) -> None:
    """A binary model exported with a final sigmoid, one column: ``predict`` gave the first
    class to every row (argmax over one column) and ``predict_proba`` was refused; a single
    logit column is refused as a logit."""

    def single(op: str, name: str) -> Path:
        ones = helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [1.0, 1.0])
        graph = helper.make_graph(
            [
                helper.make_node("MatMul", ["x", "w"], ["s"]),  # the row's sum
                *([helper.make_node(op, ["s"], ["out"])] if op else []),
            ],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
            [helper.make_tensor_value_info("out" if op else "s", TensorProto.FLOAT, [None, 1])],
            initializer=[ones],
        )
        path = tmp_path / name
        onnx.save_model(helper.make_model(graph), path)
        return path

    X = np.array([[3.0, -4.0], [0.0, 1.0], [2.0, 2.0]], dtype=np.float32)
    model = OnnxAdapter.from_file(single("Sigmoid", "sigmoid.onnx"), classes=["no", "yes"])
    p = 1.0 / (1.0 + np.exp(-X.sum(axis=1)))
    np.testing.assert_allclose(model.predict_proba(X), np.stack([1 - p, p], axis=1), rtol=1e-6)
    assert model.predict(X).tolist() == ["no", "yes", "yes"]
    logit = OnnxAdapter.from_file(single("", "logit.onnx"), classes=["no", "yes"])
    with pytest.raises(ModelOutputError, match="a logit, not a probability"):
        logit.predict(X)


@pytest.mark.parametrize(
    ("other", "probs"), [("logits", "probs"), ("log_probs", "probs"), ("log_softmax", "softmax")]
)
def test_the_probability_output_is_found_by_name(tmp_path: Path, other: str, probs: str) -> None:
    """Outputs label, logits (or log-probabilities), probs: the first (rows, k) float output
    was read as probabilities and the model refused."""
    graph = helper.make_graph(
        [
            helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
            helper.make_node("LogSoftmax", ["x"], [other], axis=1),
            helper.make_node("Softmax", ["x"], [probs], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info(other, TensorProto.FLOAT, [None, 2]),
            helper.make_tensor_value_info(probs, TensorProto.FLOAT, [None, 2]),
        ],
    )
    path = tmp_path / "three.onnx"
    onnx.save_model(helper.make_model(graph), path)
    model = OnnxAdapter.from_file(path, classes=[0, 1])
    assert model.proba_output == probs
    X = np.array([[3.0, -4.0], [0.0, 1.0]], dtype=np.float32)
    expected = np.exp(X) / np.exp(X).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-6)


def test_an_image_input_takes_flat_rows_and_a_fixed_batch_is_named(tmp_path: Path) -> None:
    """A (rows, 1, 2, 2) input refused the flat rows a data file holds (torch models take
    them), and a graph exported with a batch of 1 failed with onnxruntime's text alone."""
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("Softmax", ["flat"], ["probabilities"], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 2, 2])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 4])],
    )
    path = tmp_path / "image.onnx"
    onnx.save_model(helper.make_model(graph), path)
    model = OnnxAdapter.from_file(path, classes=["a", "b", "c", "d"])
    X = np.array([[0.0, 5.0, 1.0, 2.0], [9.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    assert model.predict(X).tolist() == ["b", "a"]
    fixed = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["probabilities"], axis=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 2])],
    )
    onnx.save_model(helper.make_model(fixed), tmp_path / "fixed.onnx")
    one = OnnxAdapter.from_file(tmp_path / "fixed.onnx", classes=[0, 1])
    assert one.predict(np.zeros((1, 2), dtype=np.float32)).shape == (1,)
    with pytest.raises(ModelError, match="fixes the batch dimension at 1 rows and was given 3"):
        one.predict(np.zeros((3, 2), dtype=np.float32))


def test_input_shape_gives_the_rows_shape_where_the_graph_leaves_it_open(
    tmp_path: Path,
) -> None:
    """A graph exported with dynamic height and width, (N, 1, H, W): flat rows reached it
    as (rows, 4) and failed; `input_shape` was ignored for ONNX models."""
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("Softmax", ["flat"], ["probabilities"], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 4])],
    )
    path = tmp_path / "dynamic.onnx"
    onnx.save_model(helper.make_model(graph), path)
    X = np.array([[0.0, 5.0, 1.0, 2.0], [9.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    with pytest.raises(ModelError, match="failed on the input"):
        OnnxAdapter.from_file(path, classes=list("abcd")).predict(X)
    model = OnnxAdapter.from_file(path, classes=list("abcd"), input_shape=(1, 2, 2))
    assert model.predict(X).tolist() == ["b", "a"]
    with pytest.raises(ModelError, match=r"input_shape \[2, 2, 1\] does not fit"):
        OnnxAdapter.from_file(path, classes=list("abcd"), input_shape=(2, 2, 1))
    with pytest.raises(ModelError, match="each at least 1"):
        OnnxAdapter.from_file(path, classes=list("abcd"), input_shape=(1, 2, -2))
    from bastion.models.loading import load_model  # what a policy's model.input_shape reaches

    loaded = load_model(path, classes=list("abcd"), input_shape=(1, 2, 2))
    assert loaded.predict(X).tolist() == ["b", "a"]
    # an input of no declared shape takes any row shape; a 2-D one of open width, its width
    norank = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("Softmax", ["flat"], ["probabilities"], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 4])],
    )
    onnx.save_model(helper.make_model(norank), tmp_path / "norank.onnx")
    free = OnnxAdapter.from_file(
        tmp_path / "norank.onnx", classes=list("abcd"), input_shape=(1, 2, 2)
    )
    assert free.row_shape == (1, 2, 2)
    assert free.predict(X).tolist() == ["b", "a"]
    wide = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["probabilities"], axis=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "F"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", "F"])],
    )
    onnx.save_model(helper.make_model(wide), tmp_path / "wide.onnx")
    flat = OnnxAdapter.from_file(tmp_path / "wide.onnx", classes=list("abcd"), input_shape=(4,))
    assert flat.n_features_in_ == 4


def test_output_names_from_a_policy_say_which_output_is_which(tmp_path: Path) -> None:
    """Outputs named neither for labels nor for probabilities ("raw" then "scores"): the
    first was taken, the model refused, and a policy could not name the right one."""
    from bastion.config import parse_policy
    from bastion.models.loading import load_model

    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["raw"]),
            helper.make_node("Softmax", ["x"], ["scores"], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [
            helper.make_tensor_value_info("raw", TensorProto.FLOAT, [None, 2]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 2]),
        ],
    )
    path = tmp_path / "two.onnx"
    onnx.save_model(helper.make_model(graph), path)
    X = np.array([[3.0, -4.0], [0.0, 1.0]], dtype=np.float32)
    assert OnnxAdapter.from_file(path, classes=[0, 1]).proba_output == "raw"
    spec = parse_policy(
        {"model": {"path": str(path), "classes": [0, 1], "proba_output": "scores"}}
    ).spec.model
    assert spec is not None
    model = load_model(path, classes=spec.classes, proba_output=spec.proba_output)
    expected = np.exp(X) / np.exp(X).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-6)
    with pytest.raises(ModelError, match="has no output 'prob'"):
        load_model(path, classes=[0, 1], proba_output="prob")
    # through the runner, as `bastion check` loads a policy's model
    from bastion.runner import _load_model

    policy = parse_policy(
        {"model": {"path": str(path), "classes": [0, 1], "proba_output": "scores"}}
    )
    model = _load_model(policy, policy.spec.model, "model")
    assert model is not None
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-6)
    # an endpoint's outputs are named the same way (tests/models/test_remote.py)


def test_label_only_graph_has_no_proba(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None])],
    )
    path = tmp_path / "argmax.onnx"
    onnx.save_model(helper.make_model(graph), path)
    model = OnnxAdapter.from_file(path)
    assert model.predict(np.eye(3)).tolist() == [0, 1, 2]
    with pytest.raises(CapabilityError):
        model.predict_proba(np.eye(3))


def test_invalid_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xfe not protobuf")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        OnnxAdapter.from_file(bad)
    with pytest.raises(ModelError, match="does not exist"):
        OnnxAdapter.from_file(tmp_path / "missing.onnx")


def test_a_dataset_of_another_width_names_its_columns_and_the_way_out(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Pipeline
) -> None:
    from bastion.data.dataset import Dataset
    from bastion.exceptions import DataError
    from bastion.models.predictions import predict_dataset

    X, y = cancer
    model = OnnxAdapter.from_file(_convert(cancer_pipeline, tmp_path / "c.onnx", False))
    assert model.n_features_in_ == 30  # the graph's fixed input width
    frame = X.assign(target=y.to_numpy())
    wide = frame.assign(row_id=np.arange(len(frame)))
    with pytest.raises(DataError, match=r"31 feature columns .* takes 30: name the columns"):
        predict_dataset(model, Dataset.from_frame(wide, target="target"))
    assert model.n_queries == 0  # refused before the model saw a row
    kept = Dataset.from_frame(wide, target="target", non_features=["row_id"])
    assert len(predict_dataset(model, kept).y_pred) == len(X)
    narrow = frame.drop(columns=[X.columns[0]])
    with pytest.raises(DataError, match="lacks some of the model's inputs"):
        predict_dataset(model, Dataset.from_frame(narrow, target="target"))
