"""The OIP binary tensor data codec: round trips, exact size checks, tritonclient interop."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from bastion.exceptions import DataError, ModelOutputError
from bastion.gateway.binary import (
    HEADER_LENGTH_HEADER,
    BinaryTensorError,
    encode_infer_response,
    parse_infer_request,
    wants_binary,
)

RNG = np.random.default_rng(20261126)


def _request(tensors: list[tuple[str, str, list[int], bytes]], **extra: Any) -> tuple[bytes, int]:
    """A binary request built by hand (independently of the codec): header + chunks."""
    header = {
        "inputs": [
            {"name": n, "datatype": dt, "shape": s, "parameters": {"binary_data_size": len(b)}}
            for n, dt, s, b in tensors
        ],
        **extra,
    }
    text = json.dumps(header).encode()
    return text + b"".join(b for *_, b in tensors), len(text)


def _bytes_elements(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


# ---------------------------------------------------------------- parsing, hand-built bodies


def test_parse_decodes_each_datatype_little_endian() -> None:
    fp32 = [1.5, -2.25, 3.0, 0.125, 1e-3, 7.0]
    fp64 = [np.pi, -np.e]
    i64 = [-(2**40), 7, 2**62]
    bools = [1, 0, 0, 1]
    strs = [b"alpha", b"", b"\xff\x00binary"]
    body, n = _request(
        [
            ("a", "FP32", [2, 3], struct.pack("<6f", *fp32)),
            ("b", "FP64", [2], struct.pack("<2d", *fp64)),
            ("c", "INT64", [3, 1], struct.pack("<3q", *i64)),
            ("d", "BOOL", [2, 2], bytes(bools)),
            ("e", "BYTES", [3], _bytes_elements(strs)),
        ]
    )
    header, arrays = parse_infer_request(body, n)
    assert [t["name"] for t in header["inputs"]] == ["a", "b", "c", "d", "e"]
    assert arrays["a"].dtype == np.float32
    assert arrays["a"].shape == (2, 3)
    np.testing.assert_array_equal(arrays["a"].ravel(), np.array(fp32, dtype=np.float32))
    assert arrays["b"].dtype == np.float64
    assert arrays["b"].tolist() == fp64
    assert arrays["c"].dtype == np.int64
    assert arrays["c"].ravel().tolist() == i64
    assert arrays["d"].dtype == np.bool_
    assert arrays["d"].ravel().tolist() == [
        True,
        False,
        False,
        True,
    ]
    assert arrays["e"].dtype == np.object_
    assert arrays["e"].tolist() == strs
    assert arrays["a"].flags.writeable  # a copy, not a view of the immutable body


def test_parse_leaves_json_inputs_to_the_caller() -> None:
    header = {
        "inputs": [
            {"name": "j", "datatype": "INT32", "shape": [2], "data": [1, 2]},
            {"name": "b", "datatype": "INT32", "shape": [1], "parameters": {"binary_data_size": 4}},
        ]
    }
    text = json.dumps(header).encode()
    parsed, arrays = parse_infer_request(text + struct.pack("<i", -9), len(text))
    assert parsed == header
    assert list(arrays) == ["b"]
    assert arrays["b"].tolist() == [-9]


def test_parse_plain_json_without_header_length() -> None:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
    header, arrays = parse_infer_request(body.encode(), None)
    assert header["inputs"][0]["data"] == [1]
    assert arrays == {}


def test_parse_empty_tensors() -> None:
    body, n = _request([("f", "FP32", [0, 4], b""), ("s", "BYTES", [0], b"")])
    _, arrays = parse_infer_request(body, n)
    assert arrays["f"].shape == (0, 4)
    assert arrays["s"].shape == (0,)


# ---------------------------------------------------------------- malformed sizes


def test_parse_rejects_extra_trailing_bytes() -> None:
    body, n = _request([("x", "FP32", [2], b"\0" * 8)])
    assert parse_infer_request(body, n)[1]["x"].shape == (2,)
    with pytest.raises(BinaryTensorError, match=r"\['x'\] sums to 8 bytes but 9 bytes follow"):
        parse_infer_request(body + b"\0", n)


def test_parse_rejects_truncated_body() -> None:
    body, n = _request([("x", "INT64", [2], b"\0" * 16)])
    with pytest.raises(BinaryTensorError, match=r"\['x'\] sums to 16 bytes but 15 bytes follow"):
        parse_infer_request(body[:-1], n)


def test_parse_rejects_size_that_does_not_fit_the_shape() -> None:
    # the sizes add up to the body, but 'a' claims 12 bytes for two INT32s (8)
    body, n = _request([("a", "INT32", [2], b"\0" * 12), ("b", "INT32", [1], b"\0" * 4)])
    with pytest.raises(BinaryTensorError, match=r"input 'a'.*12 bytes.*needs 8 \(2 x 4\)"):
        parse_infer_request(body, n)


@pytest.mark.parametrize(
    ("payload", "shape", "match"),
    [
        (_bytes_elements([b"ab"])[:-1], [1], r"input 's'.*declares 2 bytes but only 1 remain"),
        (_bytes_elements([b"ab"]) + b"\0\0", [1], r"input 's'.*truncated 4-byte length prefix"),
        (_bytes_elements([b"ab", b"c"]), [3], r"input 's'.*holds 2 BYTES elements.*needs 3"),
    ],
)
def test_parse_rejects_malformed_bytes(payload: bytes, shape: list[int], match: str) -> None:
    body, n = _request([("s", "BYTES", shape, payload)])
    with pytest.raises(BinaryTensorError, match=match):
        parse_infer_request(body, n)


def test_parse_rejects_bool_bytes_other_than_0_and_1() -> None:
    body, n = _request([("flags", "BOOL", [3], bytes([1, 0, 2]))])
    with pytest.raises(BinaryTensorError, match=r"input 'flags': BOOL element 2 is byte 2"):
        parse_infer_request(body, n)


@pytest.mark.parametrize(
    ("tensor", "match"),
    [
        ({"datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": -4}}, "non-neg"),
        ({"datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": True}}, "non-neg"),
        ({"datatype": "BF16", "shape": [1], "parameters": {"binary_data_size": 2}}, "'BF16'"),
        ({"datatype": "FP32", "shape": [-1], "parameters": {"binary_data_size": 4}}, "shape"),
        (
            {
                "datatype": "FP32",
                "shape": [1],
                "data": [1.0],
                "parameters": {"binary_data_size": 4},
            },
            "both 'data' and binary_data_size",
        ),
    ],
)
def test_parse_rejects_bad_declarations(tensor: dict[str, Any], match: str) -> None:
    text = json.dumps({"inputs": [{"name": "x", **tensor}]}).encode()
    with pytest.raises(BinaryTensorError, match=rf"input 'x'.*{match}"):
        parse_infer_request(text + b"\0" * 4, len(text))


def test_parse_rejects_bad_header_length_and_header() -> None:
    body, n = _request([("x", "FP32", [1], b"\0" * 4)])
    with pytest.raises(BinaryTensorError, match=HEADER_LENGTH_HEADER):
        parse_infer_request(body, len(body) + 1)
    with pytest.raises(BinaryTensorError, match=rf"first {n - 1} bytes .* not valid JSON"):
        parse_infer_request(body, n - 1)
    # without the header the binary tail makes the body invalid JSON
    with pytest.raises(BinaryTensorError, match="the request body is not valid JSON"):
        parse_infer_request(body, None)
    with pytest.raises(BinaryTensorError, match="'inputs' list"):
        parse_infer_request(b"[]", 2)


def test_error_is_a_value_error() -> None:
    assert issubclass(BinaryTensorError, DataError)
    assert issubclass(BinaryTensorError, ValueError)


# ---------------------------------------------------------------- wants_binary


def test_wants_binary_per_output_overrides_request_default() -> None:
    header = {
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
    }
    assert wants_binary(header, ["a", "b", "c"]) == {"a"}
    header["parameters"] = {}
    header["outputs"][1]["parameters"] = {"binary_data": True}
    assert wants_binary(header) == {"b"}


def test_wants_binary_without_outputs_uses_available() -> None:
    assert wants_binary({"parameters": {"binary_data_output": True}}, ["x", "y"]) == {"x", "y"}
    assert wants_binary({}, ["x", "y"]) == set()


def test_wants_binary_rejects_non_boolean_flags() -> None:
    with pytest.raises(BinaryTensorError, match="binary_data_output must be a boolean"):
        wants_binary({"parameters": {"binary_data_output": "yes"}})
    with pytest.raises(BinaryTensorError, match=r"output 'a'.*binary_data must be a boolean"):
        wants_binary({"outputs": [{"name": "a", "parameters": {"binary_data": 1}}]})


# ---------------------------------------------------------------- encoding


def _response(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"model_name": "m", "id": "42", "outputs": [{"name": k} for k in arrays]}


def test_encode_binary_layout_matches_the_spec() -> None:
    arrays = {
        "p": np.array([[0.25, 0.75]], dtype=np.float32),
        "k": np.array([3, -1], dtype=np.int64),
        "ok": np.array([True, False]),
        "s": np.array(["hé", b"\x00"], dtype=object),
    }
    response = _response(arrays)
    body, headers = encode_infer_response(response, arrays, {"p", "k", "ok", "s"})
    n = int(headers[HEADER_LENGTH_HEADER])
    assert headers["Content-Type"] == "application/octet-stream"
    header = json.loads(body[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes == [8, 16, 2, 4 + 3 + 4 + 1]
    assert all("data" not in o for o in header["outputs"])
    assert [o["datatype"] for o in header["outputs"]] == ["FP32", "INT64", "BOOL", "BYTES"]
    assert header["outputs"][0]["shape"] == [1, 2]
    expected = (
        struct.pack("<2f", 0.25, 0.75)
        + struct.pack("<2q", 3, -1)
        + b"\x01\x00"
        + _bytes_elements(["hé".encode(), b"\x00"])
    )
    assert body[n:] == expected
    assert response == _response(arrays)  # the input is not modified


def test_encode_without_binary_is_plain_json() -> None:
    arrays = {"y": np.array([1.5, 2.5])}
    body, headers = encode_infer_response(_response(arrays), arrays, set())
    assert headers == {"Content-Type": "application/json"}
    out = json.loads(body)["outputs"][0]
    assert out == {"name": "y", "datatype": "FP64", "shape": [2], "data": [1.5, 2.5]}


def test_encode_uses_json_data_when_no_array_is_given() -> None:
    response = {
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["a", "bc"]},
            {"name": "probabilities", "datatype": "FP64", "shape": [1, 2], "data": [0.1, 0.9]},
        ]
    }
    body, headers = encode_infer_response(response, {}, {"label", "probabilities"})
    n = int(headers[HEADER_LENGTH_HEADER])
    assert body[n:] == _bytes_elements([b"a", b"bc"]) + struct.pack("<2d", 0.1, 0.9)


def test_encode_carries_nan_in_binary_but_not_in_json() -> None:
    arrays = {"y": np.array([np.nan], dtype=np.float32)}
    body, headers = encode_infer_response(_response(arrays), arrays, {"y"})
    assert np.isnan(np.frombuffer(body[int(headers[HEADER_LENGTH_HEADER]) :], "<f4")[0])
    with pytest.raises(ValueError, match="JSON"):
        encode_infer_response(_response(arrays), arrays, set())


def test_encode_rejects_values_that_do_not_fit_the_declared_output() -> None:
    response = {"outputs": [{"name": "y", "datatype": "FP32", "shape": [3]}]}
    with pytest.raises(ModelOutputError, match=r"output 'y' holds 2 values.*needs 3"):
        encode_infer_response(response, {"y": np.zeros(2, dtype=np.float32)}, {"y"})
    response = {"outputs": [{"name": "y", "datatype": "INT32", "shape": [1]}]}
    with pytest.raises(ModelOutputError, match=r"output 'y'.*float64 cannot be sent as INT32"):
        encode_infer_response(response, {"y": np.zeros(1)}, {"y"})
    with pytest.raises(ModelOutputError, match=r"output 'y' has neither"):
        encode_infer_response(response, {}, {"y"})


# ---------------------------------------------------------------- interop with tritonclient


def _triton_http() -> Any:
    return pytest.importorskip("tritonclient.http")


def _sample_tensors() -> dict[str, tuple[str, np.ndarray]]:
    return {
        "f32": ("FP32", RNG.standard_normal((4, 3)).astype(np.float32)),
        "f64": ("FP64", RNG.standard_normal((2, 5))),
        "f16": ("FP16", RNG.standard_normal(6).astype(np.float16)),
        "i64": ("INT64", RNG.integers(-(2**50), 2**50, size=(3, 2), dtype=np.int64)),
        "u8": ("UINT8", RNG.integers(0, 255, size=7, dtype=np.uint8)),
        "flag": ("BOOL", RNG.random((2, 2)) > 0.5),
        "text": ("BYTES", np.array([b"zero", "ünïcode".encode(), b"", b"\x00\xff"], dtype=object)),
    }


def test_tritonclient_request_is_parsed() -> None:
    http = _triton_http()
    tensors = _sample_tensors()
    inputs = []
    for name, (datatype, arr) in tensors.items():
        inp = http.InferInput(name, list(arr.shape), datatype)
        inp.set_data_from_numpy(arr, binary_data=True)
        inputs.append(inp)
    as_json = http.InferInput("json_in", [2], "INT32")
    as_json.set_data_from_numpy(np.array([5, 6], dtype=np.int32), binary_data=False)
    inputs.insert(2, as_json)  # a JSON input between binary ones must not shift offsets
    body, header_length = http.InferenceServerClient.generate_request_body(inputs)
    assert header_length is not None

    header, arrays = parse_infer_request(body, header_length)
    assert set(arrays) == set(tensors)
    for name, (_, arr) in tensors.items():
        assert arrays[name].dtype == arr.dtype
        assert arrays[name].shape == arr.shape
        np.testing.assert_array_equal(arrays[name], arr)
    assert next(t for t in header["inputs"] if t["name"] == "json_in")["data"] == [5, 6]
    # no outputs named: tritonclient asks for all of them in binary
    assert wants_binary(header, ["out_a", "out_b"]) == {"out_a", "out_b"}

    with pytest.raises(BinaryTensorError, match="bytes follow"):
        parse_infer_request(body[:-1], header_length)


def test_tritonclient_requested_outputs_drive_wants_binary() -> None:
    http = _triton_http()
    inp = http.InferInput("x", [1], "FP32")
    inp.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    outputs = [
        http.InferRequestedOutput("a", binary_data=True),
        http.InferRequestedOutput("b", binary_data=False),
    ]
    body, n = http.InferenceServerClient.generate_request_body([inp], outputs=outputs)
    header, _ = parse_infer_request(body, n)
    assert wants_binary(header, ["a", "b"]) == {"a"}


def test_tritonclient_decodes_our_response() -> None:
    http = _triton_http()
    tensors = {name: arr for name, (_, arr) in _sample_tensors().items()}
    tensors["json_out"] = np.arange(6, dtype=np.int32).reshape(2, 3)
    response = _response(tensors)
    binary = set(tensors) - {"json_out"}
    body, headers = encode_infer_response(response, tensors, binary)

    result = http.InferResult.from_response_body(
        body, header_length=int(headers[HEADER_LENGTH_HEADER])
    )
    for name, arr in tensors.items():
        got = result.as_numpy(name)
        assert got.shape == arr.shape, name
        np.testing.assert_array_equal(got, arr)
    assert "data" in result.get_output("json_out")
    assert result.get_output("f32")["parameters"]["binary_data_size"] == 4 * 3 * 4

    # and without any binary output the client reads the plain JSON body
    plain, headers = encode_infer_response(response, tensors, set())
    assert HEADER_LENGTH_HEADER not in headers
    result = http.InferResult.from_response_body(plain)
    np.testing.assert_array_equal(result.as_numpy("i64"), tensors["i64"])


def test_tritonclient_talks_to_the_gateway_unchanged() -> None:
    """The standard client, with its default binary tensors, against a served model."""
    httpclient = pytest.importorskip("tritonclient.http")
    pytest.importorskip("fastapi")
    from sklearn.linear_model import LogisticRegression

    from bastion.gateway.oip import create_oip_app, run_in_thread
    from bastion.models.sklearn import SklearnAdapter

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    estimator = LogisticRegression().fit(X, [0, 0, 1, 1])
    app = create_oip_app({"m": SklearnAdapter(estimator)})
    with run_in_thread(app) as url:
        client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
        assert client.is_server_live()
        assert client.is_model_ready("m")
        rows = np.array([[0.0, 1.0], [3.0, 0.0]], dtype=np.float64)
        tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=True)
        outputs = [
            httpclient.InferRequestedOutput("label", binary_data=True),
            httpclient.InferRequestedOutput("probabilities", binary_data=False),
        ]
        result = client.infer("m", [tensor], outputs=outputs)
        np.testing.assert_array_equal(result.as_numpy("label"), estimator.predict(rows))
        np.testing.assert_allclose(result.as_numpy("probabilities"), estimator.predict_proba(rows))
        client.close()
