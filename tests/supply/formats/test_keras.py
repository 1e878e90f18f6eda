"""Keras configs: Lambda layers (SC040), custom objects (SC041), malformed configs (SC042).

Keras is not installed: the configs are written by hand in the layouts Keras writes (Keras 3
``config.json`` per keras/src/saving/serialization_lib.py, Keras 2 ``model_config`` as
tf.keras saved it to HDF5), and HDF5 files are written with h5py as Keras does (a root
attribute ``model_config``).
"""

from __future__ import annotations

import base64
import copy
import json
import marshal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.supply.allowlist import Allowlist
from bastion.supply.context import ScanContext
from bastion.supply.formats.keras import looks_like_hdf5, scan_keras_config, scan_keras_h5
from bastion.supply.results import ScanFinding, ScanVerdict

UNSAFE, SUSPICIOUS, ERROR = ScanVerdict.UNSAFE, ScanVerdict.SUSPICIOUS, ScanVerdict.ERROR

# what keras.src.utils.python_utils.func_dump writes for a lambda: base64 of marshalled code
_BYTECODE = base64.b64encode(marshal.dumps((lambda x: x * 2).__code__)).decode("ascii")


def _scan(config: object, allow: Allowlist | None = None) -> list[ScanFinding]:
    ctx = ScanContext(allow=allow or Allowlist())
    scan_keras_config(config, "", ctx)
    return ctx.findings


def _rules(findings: list[ScanFinding]) -> list[tuple[str, ScanVerdict]]:
    return sorted((f.rule, f.verdict) for f in findings)


def _k3_obj(module: str | None, cls: str, config: Any, registered: str | None = None) -> Any:
    return {"module": module, "class_name": cls, "config": config, "registered_name": registered}


def _k3_dense(name: str, units: int, activation: Any = "relu") -> dict[str, Any]:
    dtype = _k3_obj("keras", "DTypePolicy", {"name": "float32"})
    layer = _k3_obj(
        "keras.layers",
        "Dense",
        {
            "name": name,
            "trainable": True,
            "dtype": dtype,
            "units": units,
            "activation": activation,
            "use_bias": True,
            "kernel_initializer": _k3_obj("keras.initializers", "GlorotUniform", {"seed": None}),
            "bias_initializer": _k3_obj("keras.initializers", "Zeros", {}),
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        },
    )
    layer["build_config"] = {"input_shape": [None, 30]}
    return dict(layer)


def _k3_model(*layers: dict[str, Any]) -> dict[str, Any]:
    """A Keras 3 ``config.json``: Sequential, input layer, the given layers, compile config."""
    model = _k3_obj(
        "keras",
        "Sequential",
        {
            "name": "sequential",
            "trainable": True,
            "dtype": _k3_obj("keras", "DTypePolicy", {"name": "float32"}),
            "layers": [
                _k3_obj(
                    "keras.layers",
                    "InputLayer",
                    {
                        "batch_shape": [None, 30],
                        "dtype": "float32",
                        "sparse": False,
                        "name": "input_layer",
                    },
                ),
                *layers,
            ],
        },
    )
    model["build_config"] = {"input_shape": [None, 30]}
    model["compile_config"] = {
        "optimizer": _k3_obj("keras.optimizers", "Adam", {"name": "adam", "learning_rate": 0.001}),
        "loss": "binary_crossentropy",
        "metrics": ["accuracy"],
        "loss_weights": None,
        "run_eagerly": False,
        "jit_compile": False,
    }
    return dict(model)


def _k2_model(*layers: dict[str, Any]) -> dict[str, Any]:
    """A Keras 2 ``model_config`` (tf.keras HDF5): class names only, no modules."""
    dense = {
        "class_name": "Dense",
        "config": {
            "name": "dense",
            "trainable": True,
            "dtype": "float32",
            "units": 1,
            "activation": "sigmoid",
            "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None,
        },
    }
    inp = {
        "class_name": "InputLayer",
        "config": {
            "batch_input_shape": [None, 30],
            "dtype": "float32",
            "sparse": False,
            "ragged": False,
            "name": "dense_input",
        },
    }
    return {
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": [inp, dense, *layers]},
        "keras_version": "2.15.0",
        "backend": "tensorflow",
    }


def _k2_lambda(name: str = "lambda") -> dict[str, Any]:
    return {
        "class_name": "Lambda",
        "config": {
            "name": name,
            "trainable": True,
            "dtype": "float32",
            "function": [_BYTECODE, None, None],
            "function_type": "lambda",
            "module": "__main__",
            "output_shape": None,
            "output_shape_type": "raw",
            "output_shape_module": None,
            "arguments": {},
        },
        "name": name,
        "inbound_nodes": [[["dense", 0, 0, {}]]],
    }


def _k3_lambda(name: str, function: Any, arguments: Any = None) -> dict[str, Any]:
    return dict(
        _k3_obj(
            "keras.layers",
            "Lambda",
            {
                "name": name,
                "trainable": True,
                "function": function,
                "arguments": arguments or {},
            },
        )
    )


_SERIALIZED_LAMBDA = {"class_name": "__lambda__", "config": {"value": [_BYTECODE, None, None]}}


# ---------------------------------------------------------------- benign configs


def test_benign_keras3_config_has_no_findings() -> None:
    relu = _k3_obj("keras.activations", "function", "relu", "relu")
    assert _scan(_k3_model(_k3_dense("dense", 8, relu), _k3_dense("dense_1", 1))) == []


def test_benign_keras2_config_has_no_findings() -> None:
    assert _scan(_k2_model()) == []


def test_builtin_named_functions_pass() -> None:
    # Keras 3 writes functions it resolves among its own built-ins with module 'builtins'
    fn = _k3_obj("builtins", "function", "mean_squared_error", None)
    assert _scan(_k3_model(_k3_dense("d", 1, fn))) == []


# ---------------------------------------------------------------- SC040


def test_keras3_lambda_layer_is_unsafe() -> None:
    findings = _scan(_k3_model(_k3_lambda("double_it", _SERIALIZED_LAMBDA)))
    assert _rules(findings) == [("SC040", UNSAFE)]  # one finding: the payload is not repeated
    assert "'double_it'" in findings[0].message
    assert "bytecode" in findings[0].message
    assert findings[0].location == "$.config.layers[1]"


def test_keras2_lambda_layer_is_unsafe() -> None:
    findings = _scan(_k2_model(_k2_lambda("evil")))
    assert _rules(findings) == [("SC040", UNSAFE)]
    assert "'evil'" in findings[0].message


def test_serialized_lambda_outside_a_lambda_layer_is_unsafe() -> None:
    findings = _scan(_k3_model(_k3_dense("dense", 4, activation=_SERIALIZED_LAMBDA)))
    assert _rules(findings) == [("SC040", UNSAFE)]
    assert "activation" in findings[0].location


def test_lambda_calling_os_system_names_the_callable() -> None:
    # JFrog KERAS-CUSTOM: no bytecode, a reference to a standard-library function
    system = _k3_obj("os", "function", "system", "function")
    findings = _scan(_k3_model(_k3_lambda("shell", system, {"command": "id"})))
    assert _rules(findings) == [("SC040", UNSAFE), ("SC041", UNSAFE)]
    assert any("os.system" in f.message for f in findings)


def test_keras_safe_mode_bypasses_are_unsafe() -> None:
    # CVE-2025-9906 style: load another model with safe_mode off, or switch it off
    load = _k3_obj("keras.models", "function", "load_model", "function")
    lift = _k3_obj("keras.config", "function", "enable_unsafe_deserialization", "function")
    findings = _scan(
        _k3_model(_k3_lambda("l", load, {"safe_mode": False}), _k3_dense("d", 1, lift))
    )
    assert _rules(findings) == [("SC040", UNSAFE), ("SC041", UNSAFE), ("SC041", UNSAFE)]
    assert any("enable_unsafe_deserialization" in f.message for f in findings)


def test_tf_op_lambda() -> None:
    def op(function: str) -> dict[str, Any]:
        return {
            "class_name": "TFOpLambda",
            "config": {"name": f"tf.{function}", "trainable": True, "function": function},
        }

    assert _scan(_k2_model(op("math.add"), op("__operators__.add"), op("reshape"))) == []
    for gadget in ("io.write_file", "compat.v1.io.write_file", "py_function"):
        findings = _scan(_k2_model(op(gadget)))
        assert _rules(findings) == [("SC041", UNSAFE)], gadget
        assert f"tf.{gadget}" in findings[0].message
    serialized = op("x")
    serialized["config"]["function"] = [_BYTECODE, None, None]
    assert _rules(_scan(_k2_model(serialized))) == [("SC040", UNSAFE)]


# ---------------------------------------------------------------- SC041


def _custom_layer() -> dict[str, Any]:
    return dict(_k3_obj("my_pkg.layers", "Scale", {"name": "scale", "factor": 2.0}, "my_pkg>Scale"))


def test_custom_object_is_suspicious() -> None:
    findings = _scan(_k3_model(_custom_layer()))
    assert _rules(findings) == [("SC041", SUSPICIOUS)]
    assert "my_pkg.layers.Scale" in findings[0].message


@pytest.mark.parametrize("name", ["my_pkg.layers.Scale", "my_pkg>Scale"])
def test_allowlisted_custom_object_passes(name: str) -> None:
    assert _scan(_k3_model(_custom_layer()), allow=Allowlist.of([name])) == []


def test_dangerous_module_cannot_be_allowlisted() -> None:
    config = _k3_model(dict(_k3_obj("subprocess", "Popen", {"args": ["id"]})))
    findings = _scan(config, allow=Allowlist.of(["subprocess.Popen"]))
    assert _rules(findings) == [("SC041", UNSAFE)]


def test_keras2_registered_custom_object_is_suspicious() -> None:
    custom = {"class_name": "Custom>Scale", "config": {"name": "scale"}}
    assert _rules(_scan(_k2_model(custom))) == [("SC041", SUSPICIOUS)]
    assert _scan(_k2_model(custom), allow=Allowlist.of(["Custom>Scale"])) == []


def test_keras3_class_from_main_is_suspicious() -> None:
    custom = dict(_k3_obj(None, "MyLayer", {"name": "mine"}, "MyLayer"))
    assert _rules(_scan(_k3_model(custom))) == [("SC041", SUSPICIOUS)]


def test_registered_name_inside_a_keras_module_is_suspicious() -> None:
    sneaky = dict(_k3_obj("keras.layers", "Dense", {"name": "d"}, "evil>Dense"))
    assert _rules(_scan(_k3_model(sneaky))) == [("SC041", SUSPICIOUS)]


def test_functions_outside_numeric_keras_and_builtins() -> None:
    odd = _k3_obj("keras.utils", "function", "normalize", "function")
    assert _rules(_scan(_k3_model(_k3_dense("d", 1, odd)))) == [("SC041", SUSPICIOUS)]
    exec_fn = _k3_obj("builtins", "function", "exec", None)
    assert _rules(_scan(_k3_model(_k3_dense("d", 1, exec_fn)))) == [("SC041", UNSAFE)]


# ---------------------------------------------------------------- SC042 and robustness


@pytest.mark.parametrize("config", [[1, 2], "Sequential", None])
def test_config_that_is_not_an_object_is_an_error(config: object) -> None:
    assert _rules(_scan(config)) == [("SC042", ERROR)]


def test_deeply_nested_config_does_not_exhaust_the_stack() -> None:
    nested: Any = _k2_lambda("deep")
    for _ in range(50_000):
        nested = [nested]
    findings = _scan({"class_name": "Sequential", "config": {"layers": nested}})
    assert _rules(findings) == [("SC040", UNSAFE)]


# ---------------------------------------------------------------- HDF5


h5py = pytest.importorskip("h5py")


def _h5(path: Path, attrs: dict[str, Any], userblock: int = 0, **kwargs: Any) -> bytes:
    """An HDF5 file like Keras writes: root attributes plus a group of weights."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w", userblock_size=userblock, **kwargs) as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        weights = f.create_group("model_weights/dense")
        weights.create_dataset("kernel:0", data=rng.standard_normal((30, 64)).astype(np.float32))
        weights.create_dataset("bias:0", data=np.zeros(64, dtype=np.float32))
    return path.read_bytes()


def _scan_h5(data: bytes, where: str = "") -> list[ScanFinding]:
    ctx = ScanContext(allow=Allowlist())
    scan_keras_h5(memoryview(data), where, ctx)
    return ctx.findings


def test_looks_like_hdf5(tmp_path: Path) -> None:
    plain = _h5(tmp_path / "a.h5", {})
    shifted = _h5(tmp_path / "b.h5", {}, userblock=512)
    assert plain[:8] == b"\x89HDF\r\n\x1a\n"
    assert shifted[:8] != plain[:8]
    assert looks_like_hdf5(memoryview(plain))
    assert looks_like_hdf5(memoryview(shifted))
    assert not looks_like_hdf5(memoryview(b"PK\x03\x04" + bytes(2048)))
    assert not looks_like_hdf5(memoryview(b""))


def test_h5_keras2_model_benign(tmp_path: Path) -> None:
    training = {
        "loss": "binary_crossentropy",
        "metrics": ["accuracy"],
        "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}},
    }
    data = _h5(
        tmp_path / "m.h5",
        {
            "keras_version": "2.15.0",
            "backend": "tensorflow",
            "model_config": json.dumps(_k2_model()),
            "training_config": json.dumps(training),
        },
    )
    assert _scan_h5(data) == []


def test_weights_only_h5_is_data(tmp_path: Path) -> None:
    data = _h5(tmp_path / "w.h5", {"keras_version": "2.15.0", "backend": "tensorflow"})
    assert _scan_h5(data) == []


@pytest.mark.parametrize("as_bytes", [False, True], ids=["vlen-str", "fixed-bytes"])
def test_h5_lambda_is_found(tmp_path: Path, as_bytes: bool) -> None:
    text = json.dumps(_k2_model(_k2_lambda("evil")))
    value: Any = np.bytes_(text.encode()) if as_bytes else text
    data = _h5(tmp_path / "m.h5", {"model_config": value})
    findings = _scan_h5(data, "member x.zip > m.h5")
    assert _rules(findings) == [("SC040", UNSAFE)]
    assert findings[0].location.startswith("member x.zip > m.h5 offset ")
    assert findings[0].location.endswith("$.config.layers[2]")


def test_h5_keras3_legacy_save_custom_object(tmp_path: Path) -> None:
    data = _h5(tmp_path / "m.h5", {"model_config": json.dumps(_k3_model(_custom_layer()))}, 512)
    assert _rules(_scan_h5(data)) == [("SC041", SUSPICIOUS)]


def test_h5_config_in_dense_attribute_storage(tmp_path: Path) -> None:
    # a config over 64 KiB among many attributes: HDF5 moves attributes to a fractal heap
    model = _k2_model(*(copy.deepcopy(_k2_model()["config"]["layers"][1]) for _ in range(300)))
    model["config"]["layers"].append(_k2_lambda("hidden"))
    text = json.dumps(model)
    assert len(text) > 65536
    attrs: dict[str, Any] = {f"note{i}": f"value {i}" for i in range(12)}
    attrs["model_config"] = text
    data = _h5(tmp_path / "m.h5", attrs, libver="latest")
    assert b'"hidden"' in data
    assert _rules(_scan_h5(data)) == [("SC040", UNSAFE)]


def test_reordered_and_spaced_json_is_found(tmp_path: Path) -> None:
    # Keras parses the whole attribute, so any key order and whitespace loads the same
    layers = [_k2_lambda("x")]
    text = (
        '{  "config": ' + json.dumps({"layers": layers}, indent=2) + ', "class_name": "Sequential"}'
    )
    data = _h5(tmp_path / "m.h5", {"model_config": text})
    assert _rules(_scan_h5(data)) == [("SC040", UNSAFE)]


def test_unicode_escapes_do_not_hide_a_lambda(tmp_path: Path) -> None:
    text = json.dumps(_k2_model(_k2_lambda())).replace('"Lambda"', '"\\u004cambda"')
    data = _h5(tmp_path / "m.h5", {"model_config": text})
    assert _rules(_scan_h5(data)) == [("SC040", UNSAFE)]


def test_h5_malformed_model_config_is_an_error(tmp_path: Path) -> None:
    text = json.dumps(_k2_model())[:-40]
    data = _h5(tmp_path / "m.h5", {"model_config": text})
    findings = _scan_h5(data)
    assert ("SC042", ERROR) in _rules(findings)
    assert all(f.verdict is not ScanVerdict.SAFE for f in findings)


def test_json_in_a_file_without_h5py() -> None:
    # the scan needs no HDF5 library: the signature, binary noise, then the attribute text
    noise = np.random.default_rng(3).bytes(4096)
    config = json.dumps(_k2_model(_k2_lambda("raw"))).encode()
    data = b"\x89HDF\r\n\x1a\n" + noise + b"model_config\x00" + config + b"\x00" + noise
    assert looks_like_hdf5(memoryview(data))
    assert _rules(_scan_h5(data)) == [("SC040", UNSAFE)]
