"""ONNX scanner: external data paths (SC020), custom domains (SC021), malformed models (SC022).

Fixtures are real skl2onnx conversions (breast cancer: a LogisticRegression, and an
MLPClassifier whose weights are initializers that can live in an external file), then
variants edited with the onnx package and serialized without it touching the filesystem.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.supply.allowlist import Allowlist
from bastion.supply.context import ScanContext
from bastion.supply.formats.onnx import looks_like_onnx, scan_onnx
from bastion.supply.results import ScanFinding, ScanVerdict

onnx = pytest.importorskip("onnx")
pytest.importorskip("skl2onnx")

from onnx import TensorProto, helper  # noqa: E402

UNSAFE, SUSPICIOUS, ERROR = ScanVerdict.UNSAFE, ScanVerdict.SUSPICIOUS, ScanVerdict.ERROR


def _scan(
    data: bytes,
    base_dir: Path | None = None,
    allow: Allowlist | None = None,
    depth: int = 0,
) -> list[ScanFinding]:
    ctx = ScanContext(allow=allow or Allowlist(), base_dir=base_dir, depth=depth)
    scan_onnx(memoryview(data), "", ctx)
    return ctx.findings


def _rules(findings: list[ScanFinding]) -> set[tuple[str, ScanVerdict]]:
    return {(f.rule, f.verdict) for f in findings}


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


@pytest.fixture(scope="module")
def logreg_bytes(cancer: tuple[np.ndarray, np.ndarray]) -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = cancer
    clf = LogisticRegression(max_iter=5000).fit(X, y)
    return bytes(to_onnx(clf, X[:1], target_opset=17).SerializeToString())


@pytest.fixture(scope="module")
def mlp_bytes(cancer: tuple[np.ndarray, np.ndarray]) -> bytes:
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    X, y = cancer
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=500, random_state=0).fit(X, y)
    return bytes(to_onnx(clf, X[:1], target_opset=17).SerializeToString())


def _model(data: bytes) -> Any:
    model = onnx.ModelProto()
    model.ParseFromString(data)
    return model


@pytest.fixture
def external(tmp_path: Path, mlp_bytes: bytes) -> Path:
    """A folder holding model.onnx with every initializer in weights.bin beside it."""
    folder = tmp_path / "model"
    folder.mkdir()
    model = _model(mlp_bytes)
    for tensor in model.graph.initializer:
        # skl2onnx writes typed fields; onnx moves only raw_data out of the file
        tensor.CopyFrom(
            onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor), tensor.name)
        )
    onnx.save_model(
        model,
        folder / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        # small tensors stay inline: ONNX Runtime needs Reshape's shape in the file
        size_threshold=64,
    )
    return folder


def _relocated(folder: Path, target: str, **entries: str) -> bytes:
    """model.onnx with its first initializer's external data moved to ``target``; other
    ``entries`` replace or add external_data keys."""
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    tensor = model.graph.initializer[0]
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = target
        elif entry.key in entries:
            entry.value = entries.pop(entry.key)
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    return bytes(model.SerializeToString())


# ---------------------------------------------------------------- detection


def test_looks_like_onnx_accepts_real_models_only(logreg_bytes: bytes) -> None:
    assert looks_like_onnx(memoryview(logreg_bytes))
    assert not looks_like_onnx(memoryview(logreg_bytes[:-5]))  # truncated: fields overrun
    assert not looks_like_onnx(memoryview(b""))
    assert not looks_like_onnx(memoryview(pickle.dumps({"a": 1}, protocol=4)))
    assert not looks_like_onnx(memoryview(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + bytes(16)))
    rng = np.random.default_rng(0)
    assert not looks_like_onnx(memoryview(rng.bytes(4096)))


# ---------------------------------------------------------------- benign files


def test_converted_logistic_regression_has_no_findings(logreg_bytes: bytes) -> None:
    # ai.onnx.ml (LinearClassifier, ZipMap) is a standard domain
    assert _scan(logreg_bytes) == []


def test_external_data_inside_the_folder_has_no_findings(external: Path) -> None:
    data = (external / "model.onnx").read_bytes()
    model = _model(data)
    external_names = {
        t.name for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL
    }
    assert {"coefficient", "coefficient1"} <= external_names
    assert _scan(data, base_dir=external) == []
    ort = pytest.importorskip("onnxruntime")
    # the peer agrees: ONNX Runtime loads it
    ort.InferenceSession(str(external / "model.onnx"), providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- SC020


@pytest.mark.parametrize(
    "location",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "sub/../../weights.bin",
        "..\\..\\secret.bin",
        "C:\\Windows\\win.ini",
        "\\\\server\\share\\w.bin",
        ".. /w.bin",
        "weights.bin\x00../../x",
    ],
)
def test_external_data_escaping_by_spelling_is_unsafe(external: Path, location: str) -> None:
    findings = _scan(_relocated(external, location), base_dir=external)
    assert _rules(findings) == {("SC020", UNSAFE)}
    (finding,) = findings
    assert "coefficient" in finding.message  # names the tensor
    assert repr(location)[1:8] in finding.message  # and the path
    assert "initializer" in finding.location


def test_spelling_is_checked_without_a_folder(external: Path) -> None:
    assert _rules(_scan(_relocated(external, "../x.bin"))) == {("SC020", UNSAFE)}
    # without a folder nothing is looked up on disk, so a missing file is not an error
    assert _scan(_relocated(external, "missing.bin")) == []


def test_symlink_leading_out_of_the_folder_is_unsafe(external: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(4096))
    (external / "link.bin").symlink_to(secret)
    findings = _scan(_relocated(external, "link.bin"), base_dir=external)
    assert _rules(findings) == {("SC020", UNSAFE)}
    assert str(secret) in findings[0].message


def test_hard_linked_data_file_is_suspicious(external: Path) -> None:
    os.link(external / "weights.bin", external / "weights-copy.bin")
    findings = _scan((external / "model.onnx").read_bytes(), base_dir=external)
    assert _rules(findings) == {("SC020", SUSPICIOUS)}
    assert "hard links" in findings[0].message


# ---------------------------------------------------------------- SC022


def test_missing_external_file_is_an_error(external: Path) -> None:
    data = _relocated(external, "missing.bin")
    findings = _scan(data, base_dir=external)
    assert _rules(findings) == {("SC022", ERROR)}
    assert "'missing.bin'" in findings[0].message
    assert "does not exist" in findings[0].message
    ort = pytest.importorskip("onnxruntime")
    (external / "broken.onnx").write_bytes(data)
    with pytest.raises(Exception, match=r"(?i)missing\.bin|external"):
        ort.InferenceSession(str(external / "broken.onnx"), providers=["CPUExecutionProvider"])


def test_offset_beyond_the_file_is_an_error(external: Path) -> None:
    size = (external / "weights.bin").stat().st_size
    findings = _scan(
        _relocated(external, "weights.bin", offset=str(size + 4096)), base_dir=external
    )
    assert _rules(findings) == {("SC022", ERROR)}
    assert f"holds {size} bytes" in findings[0].message


def test_bad_and_duplicate_external_keys(external: Path) -> None:
    data = _relocated(external, "weights.bin", offset="-1")
    assert _rules(_scan(data, base_dir=external)) == {("SC022", ERROR)}
    # a second 'location' entry: loaders disagree on which one wins, so both are checked
    data = _relocated(external, "weights.bin", location="../../etc/passwd")
    assert [e.key for e in _model(data).graph.initializer[0].external_data].count("location") == 2
    findings = _scan(data, base_dir=external)
    assert _rules(findings) == {("SC022", ERROR), ("SC020", UNSAFE)}
    assert any("repeats external_data key 'location'" in f.message for f in findings)


def test_unknown_external_key_is_suspicious(external: Path) -> None:
    findings = _scan(_relocated(external, "weights.bin", __class__="x"), base_dir=external)
    assert _rules(findings) == {("SC022", SUSPICIOUS)}


def test_truncated_model_is_an_error(logreg_bytes: bytes) -> None:
    findings = _scan(logreg_bytes[: len(logreg_bytes) // 2])
    assert _rules(findings) == {("SC022", ERROR)}
    assert "malformed" in findings[0].message


def test_members_of_archives_are_not_looked_up_on_disk(external: Path) -> None:
    # inside a zip the path is relative to the member: the folder on disk says nothing
    assert _scan(_relocated(external, "missing.bin"), base_dir=external, depth=1) == []
    assert _rules(_scan(_relocated(external, "../x"), base_dir=external, depth=1)) == {
        ("SC020", UNSAFE)
    }


# ---------------------------------------------------------------- SC021


def _with_node(data: bytes, domain: str, import_domain: bool = True) -> bytes:
    model = _model(data)
    model.graph.node.append(
        helper.make_node("Steal", ["probabilities"], ["loot"], name="thief", domain=domain)
    )
    if import_domain:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    return bytes(model.SerializeToString())


def test_custom_operator_domain_is_suspicious(logreg_bytes: bytes) -> None:
    findings = _scan(_with_node(logreg_bytes, "com.evil"))
    assert _rules(findings) == {("SC021", SUSPICIOUS)}
    (finding,) = findings
    assert "'com.evil'" in finding.message
    assert "Steal" in finding.message
    assert "thief" in finding.location


def test_allowlisted_domain_passes(logreg_bytes: bytes) -> None:
    allow = Allowlist.of(["onnx-domain:com.evil"])
    assert _scan(_with_node(logreg_bytes, "com.evil"), allow=allow) == []


def test_onnxruntime_contrib_domain_is_standard(logreg_bytes: bytes) -> None:
    assert _scan(_with_node(logreg_bytes, "com.microsoft")) == []


def test_custom_domain_only_imported_is_reported(logreg_bytes: bytes) -> None:
    model = _model(logreg_bytes)
    model.opset_import.append(helper.make_opsetid("org.custom.ops", 1))
    findings = _scan(bytes(model.SerializeToString()))
    assert _rules(findings) == {("SC021", SUSPICIOUS)}
    assert "opset_import" in findings[0].location


def test_model_local_functions_are_not_custom_operators(logreg_bytes: bytes) -> None:
    model = _model(logreg_bytes)
    body = [helper.make_node("Neg", ["x"], ["y"])]
    function = helper.make_function(
        "pkg.local", "Negate", ["x"], ["y"], body, [helper.make_opsetid("", 17)]
    )
    model.functions.append(function)
    model.opset_import.append(helper.make_opsetid("pkg.local", 1))
    model.graph.node.append(
        helper.make_node("Negate", ["probabilities"], ["neg"], domain="pkg.local")
    )
    assert _scan(bytes(model.SerializeToString())) == []
    # a node inside the function body is still checked
    function.node.append(helper.make_node("Steal", ["y"], ["z"], domain="com.evil"))
    model.functions[0].CopyFrom(function)
    findings = _scan(bytes(model.SerializeToString()))
    assert _rules(findings) == {("SC021", SUSPICIOUS)}
    assert "function pkg.local.Negate" in findings[0].location


# ---------------------------------------------------------------- subgraphs


def _external_tensor(name: str, location: str) -> Any:
    tensor = helper.make_tensor(name, TensorProto.FLOAT, [1], [0.0])
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    return tensor


def _if_model(depth: int, leaf: Any) -> bytes:
    """A model whose graph nests ``depth`` If nodes; the innermost then-branch holds ``leaf``."""
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    const = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    plain = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=const)], "plain", [], [out]
    )
    graph = helper.make_graph(
        [helper.make_node("Identity", [leaf.name], ["y"])], "leaf", [], [out], [leaf]
    )
    for level in range(depth):
        node = helper.make_node(
            "If", ["cond"], ["y"], name=f"if{level}", then_branch=graph, else_branch=plain
        )
        graph = helper.make_graph([node], f"g{level}", [], [out])
    graph.input.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


def test_external_data_in_subgraphs_is_found() -> None:
    findings = _scan(_if_model(2, _external_tensor("hidden", "../../etc/shadow")))
    assert {f.rule for f in findings} == {"SC020"}
    assert "'hidden'" in findings[0].message
    assert "then_branch" in findings[0].location


def test_external_data_in_sparse_and_attribute_tensors_is_found(logreg_bytes: bytes) -> None:
    model = _model(logreg_bytes)
    values = _external_tensor("sparse_values", "/etc/passwd")
    indices = helper.make_tensor("sparse_idx", TensorProto.INT64, [1], [0])
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    model.graph.node.append(
        helper.make_node("Constant", [], ["c"], value=_external_tensor("const", "../c.bin"))
    )
    messages = [f.message for f in _scan(bytes(model.SerializeToString()))]
    assert len(messages) == 2
    assert any("'sparse_values'" in m for m in messages)
    assert any("'const'" in m for m in messages)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_subgraphs_nested_too_deep_are_an_error() -> None:
    # built by hand: the protobuf library itself refuses to build messages this deep
    graph = b""
    for _ in range(40):
        attribute = _len_field(1, b"then_branch") + _len_field(6, graph)
        graph = _len_field(1, _len_field(4, b"If") + _len_field(5, attribute))
    model = b"\x08\x08" + _len_field(7, graph)
    assert looks_like_onnx(memoryview(model))
    findings = _scan(model)
    assert _rules(findings) == {("SC022", ERROR)}
    assert "nested deeper" in findings[0].message


def test_payload_ahead_of_a_parse_error_is_still_reported() -> None:
    tensor = bytes(_external_tensor("early", "../../etc/passwd").SerializeToString())
    # the graph holds the initializer, then a node field whose length overruns the graph
    graph = _len_field(5, tensor) + b"\x0a\x7f\x00"
    model = b"\x08\x08" + _len_field(7, graph)
    findings = _scan(model)
    assert _rules(findings) == {("SC020", UNSAFE), ("SC022", ERROR)}
    assert any("'early'" in f.message for f in findings)
