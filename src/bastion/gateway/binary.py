"""The binary tensor data extension of the Open Inference Protocol (REST), as a codec.

What: an infer request or response body may be a JSON header followed by raw tensor bytes.
The header's length travels in the HTTP header ``Inference-Header-Content-Length``; each
tensor sent in binary carries ``parameters.binary_data_size`` (its byte count) instead of
``data``, and the binary section holds those tensors back to back, in the order they appear
in ``inputs`` (request) or ``outputs`` (response). Data is little-endian, row-major, without
padding; ``BOOL`` is one byte (0 or 1) per element; ``BYTES`` is, per element, a 4-byte
little-endian unsigned length followed by that many bytes. A client asks for binary outputs
with ``parameters.binary_data: true`` on a requested output, or with the request-level
``parameters.binary_data_output: true`` (which a per-output ``binary_data`` overrides).

Why: ``tritonclient.http`` sends inputs this way by default (``binary_data=True``) and,
when it names no outputs, asks for every output in binary; a server that only speaks JSON
breaks standard clients, and binary is also the only lossless way to carry FP16 and large
tensors without JSON's cost.

How: :func:`parse_infer_request` splits and checks a request body (every size is checked
exactly before any array is built, so a lying header cannot make us allocate or read past the
body); :func:`wants_binary` reads which outputs the client wants in binary;
:func:`encode_infer_response` moves those outputs' data into the binary section. The module
is framework-agnostic (bytes and dicts in, bytes and header dicts out); the OIP app calls it.

References:
    - Triton Inference Server, "Binary Tensor Data Extension",
      https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/protocol/extension_binary_data.html
      (``docs/protocol/extension_binary_data.md`` in triton-inference-server/server).
    - KServe, "Binary Tensor Data Extension" (the same extension for the OIP v2 REST API),
      https://kserve.github.io/website/latest/modelserving/data_plane/binary_tensor_data_extension
    - The reference client: ``tritonclient.http`` (``InferInput.set_data_from_numpy``,
      ``InferenceServerClient.generate_request_body``, ``InferResult.from_response_body``).

``BF16`` (a Triton-only datatype with no numpy dtype) is refused with a named error.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from bastion.exceptions import BinaryTensorError, ModelOutputError
from bastion.models.remote import OIP_DATATYPES, to_oip_datatype

__all__ = [
    "HEADER_LENGTH_HEADER",
    "BinaryTensorError",
    "encode_infer_response",
    "parse_infer_request",
    "wants_binary",
]

#: The HTTP header carrying the byte length of the JSON part of a body with binary tensors.
HEADER_LENGTH_HEADER = "Inference-Header-Content-Length"
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"

_LENGTH_PREFIX = struct.Struct("<I")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _little_endian(datatype: str) -> np.dtype[Any]:
    """The explicit little-endian numpy dtype of a fixed-size OIP datatype."""
    native: np.dtype[Any] = np.dtype(OIP_DATATYPES[datatype])
    return native.newbyteorder("<")


def _check_datatype(where: str, datatype: Any) -> str:
    if not isinstance(datatype, str) or datatype not in OIP_DATATYPES:
        raise BinaryTensorError(
            f"{where}: datatype {datatype!r} is not supported in binary form; "
            f"allowed: {sorted(OIP_DATATYPES)}"
        )
    return datatype


def _check_shape(where: str, shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise BinaryTensorError(f"{where}: shape must be a list of non-negative ints; got {shape}")
    return shape


def _decode_bytes(where: str, chunk: bytes, count: int) -> np.ndarray:
    """``count`` length-prefixed strings that fill ``chunk`` exactly, as an object array."""
    items: list[bytes] = []
    offset = 0
    while offset < len(chunk):
        if offset + _LENGTH_PREFIX.size > len(chunk):
            raise BinaryTensorError(
                f"{where}: BYTES element {len(items)} has a truncated 4-byte length prefix "
                f"at offset {offset} of {len(chunk)}"
            )
        (length,) = _LENGTH_PREFIX.unpack_from(chunk, offset)
        offset += _LENGTH_PREFIX.size
        if offset + length > len(chunk):
            raise BinaryTensorError(
                f"{where}: BYTES element {len(items)} declares {length} bytes but only "
                f"{len(chunk) - offset} remain in its binary_data_size"
            )
        items.append(chunk[offset : offset + length])
        offset += length
    if len(items) != count:
        raise BinaryTensorError(
            f"{where}: binary_data_size holds {len(items)} BYTES elements but the shape "
            f"needs {count}"
        )
    arr = np.empty(count, dtype=np.object_)
    arr[:] = items
    return arr


def _decode_tensor(where: str, datatype: str, shape: list[int], chunk: bytes) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _decode_bytes(where, chunk, count).reshape(shape)
    dtype = _little_endian(datatype)
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise BinaryTensorError(
            f"{where}: binary_data_size is {len(chunk)} bytes but shape {shape} of "
            f"{datatype} needs {expected} ({count} x {dtype.itemsize})"
        )
    if datatype == "BOOL":
        raw = np.frombuffer(chunk, dtype=np.uint8)
        if raw.size and int(raw.max()) > 1:
            bad = int(np.argmax(raw > 1))
            raise BinaryTensorError(
                f"{where}: BOOL element {bad} is byte {int(raw[bad])}; only 0 and 1 are allowed"
            )
        return raw.astype(np.bool_).reshape(shape)
    # frombuffer views the (read-only) body; the copy gives the model a writable,
    # native-order array of its own
    return (
        np.frombuffer(chunk, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)
    )


def parse_infer_request(
    raw_body: bytes, header_length: int | None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split an infer request body into its JSON header and its binary input tensors.

    Parameters:
        raw_body: the HTTP request body.
        header_length: the value of ``Inference-Header-Content-Length`` (parsed as an int),
            or ``None`` when the header is absent; then the whole body is the JSON header and
            no input may declare ``binary_data_size``.

    Returns:
        ``(header, arrays)``: the JSON header as a dict, unchanged (binary inputs keep their
        ``parameters.binary_data_size`` and have no ``data``), and, for each input sent in
        binary, its array by input name: the header's shape, the numpy dtype of its
        datatype in native byte order (``BOOL`` -> ``bool``, ``BYTES`` -> an object array of
        ``bytes``). Inputs sent as JSON ``data`` are left to the caller's JSON path.

    Raises:
        BinaryTensorError: the header length is out of range; the header is not a JSON
            object with an ``inputs`` list; an input both has ``data`` and declares
            ``binary_data_size``, or declares a bad size, datatype or shape; the sizes do not
            add up to the bytes after the header; or one input's bytes do not fit its shape
            (the message names the input and both numbers).

    Example::

        >>> body = b'{"inputs":[{"name":"x","shape":[2],"datatype":"INT32",' \\
        ...        b'"parameters":{"binary_data_size":8}}]}'
        >>> n = len(body)
        >>> header, arrays = parse_infer_request(body + b"\\x01\\0\\0\\0\\x02\\0\\0\\0", n)
        >>> arrays["x"].tolist()
        [1, 2]
    """
    size = len(raw_body)
    what = "the request body"
    if header_length is None:
        header_length = size
    else:
        what = f"the first {header_length} bytes ({HEADER_LENGTH_HEADER})"
    if not _is_int(header_length) or not 0 <= header_length <= size:
        raise BinaryTensorError(
            f"{HEADER_LENGTH_HEADER} must be an int between 0 and the body size {size}; "
            f"received {header_length!r}"
        )
    try:
        header = json.loads(raw_body[:header_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BinaryTensorError(f"{what} is not valid JSON: {err}") from err
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BinaryTensorError("the request header must be a JSON object with an 'inputs' list")

    # First pass: collect and check every declared size before touching the binary section.
    binary: list[tuple[str, str, list[int], int]] = []
    for i, tensor in enumerate(header["inputs"]):
        if not isinstance(tensor, dict):
            raise BinaryTensorError(f"inputs[{i}] must be an object")
        params = tensor.get("parameters")
        if not isinstance(params, dict) or "binary_data_size" not in params:
            continue
        name = tensor.get("name")
        where = f"input {name!r}" if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(name, str):
            raise BinaryTensorError(f"{where}: 'name' must be a string; got {name!r}")
        nbytes = params["binary_data_size"]
        if not _is_int(nbytes) or nbytes < 0:
            raise BinaryTensorError(
                f"{where}: binary_data_size must be a non-negative int; got {nbytes!r}"
            )
        if "data" in tensor:
            raise BinaryTensorError(f"{where}: has both 'data' and binary_data_size; send one")
        datatype = _check_datatype(where, tensor.get("datatype"))
        shape = _check_shape(where, tensor.get("shape"))
        binary.append((name, datatype, shape, nbytes))

    remaining = size - header_length
    declared = sum(nbytes for *_, nbytes in binary)
    if declared != remaining:
        names = [name for name, *_ in binary]
        raise BinaryTensorError(
            f"binary_data_size of inputs {names} sums to {declared} bytes but {remaining} "
            f"bytes follow the {header_length}-byte JSON header"
        )

    arrays: dict[str, np.ndarray] = {}
    offset = header_length
    for name, datatype, shape, nbytes in binary:
        if name in arrays:
            raise BinaryTensorError(f"input {name!r}: appears more than once")
        chunk = raw_body[offset : offset + nbytes]
        offset += nbytes
        arrays[name] = _decode_tensor(f"input {name!r}", datatype, shape, chunk)
    return header, arrays


def wants_binary(request_header: Mapping[str, Any], available: Iterable[str] = ()) -> set[str]:
    """The names of the outputs a client wants returned as binary data.

    A requested output's ``parameters.binary_data`` decides for that output; otherwise the
    request-level ``parameters.binary_data_output`` does (default ``False``). When the request
    lists no ``outputs`` the server returns all of them, so ``available`` (the model's output
    names) is what ``binary_data_output: true`` selects; ``tritonclient`` sends exactly that
    when its caller names no outputs.

    Parameters:
        request_header: the JSON header of the infer request.
        available: the model's output names, used when the request lists no ``outputs``.

    Returns:
        The set of output names to encode in binary (possibly empty).

    Raises:
        BinaryTensorError: ``binary_data_output`` or an output's ``binary_data`` is not a
            boolean.

    Example::

        >>> wants_binary({"outputs": [{"name": "a", "parameters": {"binary_data": True}},
        ...                           {"name": "b"}]})
        {'a'}
        >>> sorted(wants_binary({"parameters": {"binary_data_output": True}}, ["a", "b"]))
        ['a', 'b']
    """
    params = request_header.get("parameters")
    default = False
    if isinstance(params, dict) and "binary_data_output" in params:
        default = params["binary_data_output"]
        if not isinstance(default, bool):
            raise BinaryTensorError(
                f"parameters.binary_data_output must be a boolean; got {default!r}"
            )
    outputs = request_header.get("outputs")
    if not isinstance(outputs, list):
        return set(available) if default else set()
    chosen: set[str] = set()
    for out in outputs:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            continue  # the caller's own output validation reports malformed entries
        flag = default
        out_params = out.get("parameters")
        if isinstance(out_params, dict) and "binary_data" in out_params:
            flag = out_params["binary_data"]
            if not isinstance(flag, bool):
                raise BinaryTensorError(
                    f"output {out['name']!r}: parameters.binary_data must be a boolean; "
                    f"got {flag!r}"
                )
        if flag:
            chosen.add(out["name"])
    return chosen


def _encode_bytes(arr: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for item in arr.reshape(-1).tolist():
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(_LENGTH_PREFIX.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def _output_array(name: str, output: dict[str, Any], given: np.ndarray | None) -> np.ndarray:
    """The output's values as an array of its declared datatype and shape."""
    datatype = output["datatype"]
    if datatype not in OIP_DATATYPES:
        raise ModelOutputError(
            f"output {name!r}: datatype {datatype!r} cannot be encoded; "
            f"allowed: {sorted(OIP_DATATYPES)}"
        )
    if given is not None:
        arr = np.asarray(given)
    elif "data" in output:
        arr = np.asarray(output["data"], dtype=OIP_DATATYPES[datatype])
    else:
        raise ModelOutputError(f"output {name!r} has neither an array nor 'data' to encode")
    if datatype != "BYTES":
        try:
            arr = arr.astype(_little_endian(datatype), casting="same_kind", copy=False)
        except TypeError as err:
            raise ModelOutputError(
                f"output {name!r}: values of dtype {arr.dtype} cannot be sent as {datatype}"
            ) from err
    expected = math.prod(output["shape"])
    if arr.size != expected:
        raise ModelOutputError(
            f"output {name!r} holds {arr.size} values but its shape {output['shape']} "
            f"needs {expected}"
        )
    return arr


def _json_data(arr: np.ndarray) -> list[Any]:
    if arr.dtype.kind == "O" or arr.dtype.kind in "SU":
        flat = [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in arr.reshape(-1).tolist()
        ]
        return flat
    return list(arr.reshape(-1).tolist())


def encode_infer_response(
    response: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    binary_outputs: set[str],
) -> tuple[bytes, dict[str, str]]:
    """Serialize an infer response, moving the outputs in ``binary_outputs`` to binary.

    Each output of ``response["outputs"]`` takes its values from ``arrays[name]`` when given,
    else from its JSON ``data``; a missing ``datatype`` or ``shape`` is taken from the array.
    Outputs in ``binary_outputs`` get ``parameters.binary_data_size`` and lose ``data``;
    their bytes follow the JSON in output order. Other outputs stay JSON (``data`` filled from
    the array when absent). ``response`` itself is not modified.

    Parameters:
        response: the JSON infer response (``model_name``, ``id``, ``outputs``, ...).
        arrays: output name -> values; optional per output.
        binary_outputs: names to send in binary (see :func:`wants_binary`); names the
            response does not hold are ignored.

    Returns:
        ``(body, headers)``. With binary outputs: ``headers`` holds
        ``Inference-Header-Content-Length`` (the JSON's byte length) and
        ``Content-Type: application/octet-stream``; without: only
        ``Content-Type: application/json`` and the body is plain JSON.

    Raises:
        ModelOutputError: an output's values do not fit its declared shape or datatype, or it
            has no values at all (a server-side fault: HTTP 500).
        ValueError: a JSON output holds NaN or infinity (strict JSON has neither; binary
            outputs carry them fine).

    Example::

        >>> body, headers = encode_infer_response(
        ...     {"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32", "shape": [1]}]},
        ...     {"y": np.array([0.5], dtype=np.float32)}, {"y"})
        >>> headers["Inference-Header-Content-Length"], body[-4:]
        ('109', b'\\x00\\x00\\x00?')
    """
    header = dict(response)
    chunks: list[bytes] = []
    outputs: list[dict[str, Any]] = []
    for raw_output in response.get("outputs", []):
        output = dict(raw_output)
        name = str(output["name"])
        given = arrays.get(name)
        if given is not None:
            output.setdefault("datatype", to_oip_datatype(np.asarray(given).dtype))
            output.setdefault("shape", [int(d) for d in np.shape(given)])
        if name in binary_outputs:
            arr = _output_array(name, output, given)
            chunk = _encode_bytes(arr) if output["datatype"] == "BYTES" else arr.tobytes("C")
            output.pop("data", None)
            output["parameters"] = {**output.get("parameters", {}), "binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif "data" not in output and given is not None:
            output["data"] = _json_data(_output_array(name, output, given))
        outputs.append(output)
    if "outputs" in response:
        header["outputs"] = outputs
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if not chunks:
        return text, {"Content-Type": JSON_CONTENT_TYPE}
    return text + b"".join(chunks), {
        HEADER_LENGTH_HEADER: str(len(text)),
        "Content-Type": BINARY_CONTENT_TYPE,
    }
