"""Keras models: Lambda layers, code references and custom objects in the model config.

A Keras model file carries its architecture as JSON: the ``model_config`` attribute of a
legacy HDF5 file (``.h5``, Keras 2 and Keras 3's legacy saver) or ``config.json`` inside a
``.keras`` zip (Keras 3). Loading rebuilds every object the JSON names, and three kinds of
entries run code that the file chooses:

- **Lambda layers** hold a Python function: marshalled bytecode (``"function": [b64, ...]``
  with ``"function_type": "lambda"`` in Keras 2, ``{"class_name": "__lambda__"}`` in Keras 3)
  or a reference to any importable function plus its ``arguments``. Keras 2 and every HDF5
  load ignore ``safe_mode`` (CVE-2025-9905); Keras 3 ``.keras`` files reached code through
  Lambda references anyway (CVE-2024-3660, CVE-2025-1550, CVE-2025-8747, CVE-2025-9906:
  ``keras.models.load_model`` with ``safe_mode=false``, ``set_global_attribute``,
  ``enable_unsafe_deserialization``). Rule **SC040** (unsafe) names the layer; so does any
  other object holding a serialized lambda. ``TFOpLambda`` layers calling a TensorFlow API
  that touches files or runs Python (``tf.io.write_file``, ``tf.py_function``) are SC041
  unsafe.
- **Objects and functions from outside Keras**: a ``"module"`` outside ``keras``,
  ``tf_keras`` and ``tensorflow.keras`` is imported by the loader (CVE-2025-1550), a
  ``"registered_name"`` (or Keras 2 ``class_name``) of the form ``package>Name`` resolves to
  a class registered by other code. Rule **SC041**: suspicious unless the allowlist holds
  ``module.Name`` or the registered name; unsafe for known code-execution callables (the
  allowlist's gadget list: ``os.system``, ``builtins.exec`` ...) and for Keras's own
  functions that download, load or switch off safe mode.
- A config that is not a JSON object, or a ``model_config`` that cannot be decoded, is rule
  **SC042** (error).

HDF5 files are read without h5py. HDF5 stores an attribute's value in one piece (in the object
header, the global heap for variable-length strings, or a fractal-heap block for dense
attribute storage), and neither h5py nor Keras compresses attributes, so the JSON sits in the
file as plain text: the scanner finds every ``{"`` that opens a JSON object and decodes it
with ``json.JSONDecoder.raw_decode`` (objects inside a decoded one are not decoded again).
A file whose bytes name ``model_config`` but hold no decodable Keras config is an error
(SC042): the config may be stored in a way this scan cannot read (a crafted file with a
filtered attribute heap). An HDF5 file without any Keras config is data and yields no
finding.

References: JFrog model threats KERAS-LAMBDA, H5-LAMBDA and KERAS-CUSTOM
(research.jfrog.com/model-threats); io-no/CVE-Reports (CVE-2025-1550, -8747, -9905, -9906);
keras/src/saving/serialization_lib.py (the config layout); MITRE ATLAS AML.T0011.000.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from bastion.supply.allowlist import Allowlist, is_dangerous
from bastion.supply.context import ScanContext
from bastion.supply.results import ScanVerdict

__all__ = ["looks_like_hdf5", "scan_keras_config", "scan_keras_h5"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_KERAS_ROOTS = ("keras", "tf_keras", "tensorflow.keras")
_LAMBDA_LAYERS = frozenset({"Lambda"})
_TF_OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda"})

# areas of Keras whose functions compute on tensors (activations, losses...); a function
# reference elsewhere in Keras (utils, saving, config, models) is out of place in a config
_KERAS_NUMERIC_AREAS = frozenset(
    {
        "activations",
        "losses",
        "metrics",
        "ops",
        "initializers",
        "regularizers",
        "constraints",
        "optimizers",
        "random",
        "applications",
        "backend",
        "layers",
    }
)

# Keras functions a config has called to download files, load other models or switch off
# safe mode (the safe-mode bypasses listed in the module docstring)
_KERAS_GADGETS = frozenset(
    {
        "get_file",
        "enable_unsafe_deserialization",
        "set_global_attribute",
        "load_model",
        "load_weights",
        "save_model",
        "save_weights",
        "func_load",
        "model_from_json",
        "model_from_config",
        "model_from_yaml",
        "deserialize_keras_object",
        "register_keras_serializable",
    }
)

# TensorFlow API names (after an optional compat.v1. / compat.v2.) that read or write
# files, run Python, load native code or change process state: a TFOpLambda calling one is
# not arithmetic
_TF_GADGETS = (
    "io",
    "gfile",
    "py_function",
    "numpy_function",
    "py_func",
    "print",
    "Print",
    "debugging",
    "summary",
    "saved_model",
    "raw_ops",
    "data",
    "distribute",
    "load_op_library",
    "load_library",
    "load_file_system_library",
    "sysconfig",
    "train",
    "keras",
    "autograph",
    "experimental",
    "config",
    "tpu",
    "lookup",
    "function",
)

_OBJECT_START = re.compile(rb'\{\s*"')
_KERAS_START = re.compile(rb'\{\s*"(?:class_name|module|registered_name)"')
_MODEL_CONFIG = re.compile(rb"model_config")
_MAX_DECODE_ERRORS = 5  # SC042 findings per file for undecodable configs
_BUDGET_FACTOR = 16  # characters parsed per byte of file before the search gives up
_WINDOW = 4096  # characters first tried for one candidate object
_TOO_DEEP = "nested too deeply"


def looks_like_hdf5(data: memoryview) -> bool:
    """Whether ``data`` holds the HDF5 signature at offset 0, 512, 1024, 2048 ... (HDF5
    allows a user block of 512 * 2**n bytes before the superblock)."""
    offset = 0
    while offset + len(_HDF5_SIGNATURE) <= len(data):
        if bytes(data[offset : offset + len(_HDF5_SIGNATURE)]) == _HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def scan_keras_h5(data: memoryview, where: str, ctx: ScanContext) -> None:
    """Find the Keras configs stored as JSON text in an HDF5 file and scan each with
    :func:`scan_keras_config`; report SC042 when the file names ``model_config`` but holds
    no decodable Keras config.

    Parameters:
        data: the whole HDF5 file.
        where: location prefix for findings (empty for a top-level file).
        ctx: the scan in progress.
    """
    found = False
    for offset, value in _embedded_json(data, where, ctx):
        if not isinstance(value, dict):
            continue
        found = found or "class_name" in value
        scan_keras_config(value, _at(where, f"offset {offset}"), ctx)
    if not found and _MODEL_CONFIG.search(data) is not None:
        ctx.add(
            "SC042",
            ScanVerdict.ERROR,
            "the file names a 'model_config' attribute but holds no Keras config the scan "
            "can read: it may be stored where the scan cannot see it",
            where,
        )


def scan_keras_config(config: object, where: str, ctx: ScanContext) -> None:
    """Walk a parsed Keras config (``model_config`` or ``config.json``) and report Lambda
    layers and serialized lambdas (SC040), objects and functions from outside Keras (SC041)
    and a config that is not a JSON object (SC042).

    Parameters:
        config: the parsed JSON.
        where: location prefix for findings; JSON paths (``$.config.layers[1]``) follow it.
        ctx: the scan in progress; ``ctx.allow`` decides which custom objects pass.

    Example::

        >>> ctx = ScanContext(allow=Allowlist())
        >>> scan_keras_config({"class_name": "Lambda", "config": {"name": "l"}}, "", ctx)
        >>> [(f.rule, f.verdict.value) for f in ctx.findings]
        [('SC040', 'unsafe')]
    """
    if not isinstance(config, dict):
        ctx.add(
            "SC042",
            ScanVerdict.ERROR,
            f"the Keras config is a JSON {type(config).__name__}, not an object",
            where,
        )
        return
    stack: list[tuple[object, str, bool]] = [(config, "$", False)]
    while stack:  # iterative: a deeply nested config cannot exhaust the Python stack
        value, path, in_lambda = stack.pop()
        if isinstance(value, dict):
            in_lambda = _check_dict(value, _at(where, path), in_lambda, ctx) or in_lambda
            children = [(v, f"{path}.{str(k)[:60]}") for k, v in value.items()]
        elif isinstance(value, list):
            children = [(v, f"{path}[{i}]") for i, v in enumerate(value)]
        else:
            continue
        for child, child_path in reversed(children):
            if isinstance(child, (dict, list)):
                stack.append((child, child_path, in_lambda))


# ---------------------------------------------------------------- one JSON object


def _check_dict(d: dict[str, Any], at: str, in_lambda: bool, ctx: ScanContext) -> bool:
    """Report what ``d`` itself holds; True when it is a Lambda layer."""
    cls = d.get("class_name")
    if cls in _LAMBDA_LAYERS:
        ctx.add(
            "SC040",
            ScanVerdict.UNSAFE,
            f"Lambda layer {_layer_name(d)!r} {_lambda_payload(d)}: Keras runs it when it "
            "rebuilds the model",
            at,
        )
        return True
    if not in_lambda and _holds_bytecode(d):
        ctx.add(
            "SC040",
            ScanVerdict.UNSAFE,
            f"{_owner(d)} holds a serialized Python function (marshalled bytecode)",
            at,
        )
    if cls in _TF_OP_LAYERS:
        _check_tf_op(d, at, in_lambda, ctx)
    issue = _object_issue(d, ctx.allow)
    if issue is not None:
        ctx.add("SC041", issue[0], issue[1], at)
    return False


def _holds_bytecode(d: dict[str, Any]) -> bool:
    return (
        d.get("class_name") == "__lambda__"
        or "__lambda__" in d
        or d.get("function_type") == "lambda"
        or d.get("output_shape_type") == "lambda"
    )


def _inner(d: dict[str, Any]) -> dict[str, Any]:
    inner = d.get("config")
    return inner if isinstance(inner, dict) else {}


def _layer_name(d: dict[str, Any]) -> str:
    name = _inner(d).get("name", d.get("name", ""))
    return str(name)[:100]


def _owner(d: dict[str, Any]) -> str:
    name = d.get("name")
    if isinstance(name, str):
        return f"layer {name[:100]!r}"
    cls = d.get("class_name")
    return f"object {str(cls)[:100]!r}" if cls is not None else "an object"


def _lambda_payload(d: dict[str, Any]) -> str:
    """What a Lambda layer's function is, in words."""
    inner = _inner(d)
    fn = inner.get("function")
    if isinstance(fn, dict) and fn.get("class_name") == "__lambda__":
        return "carries marshalled Python bytecode"
    if isinstance(fn, list) or inner.get("function_type") == "lambda":
        return "carries marshalled Python bytecode"
    if isinstance(fn, dict) and fn.get("class_name") == "function":
        return f"calls {str(fn.get('module'))[:80]}.{str(fn.get('config'))[:80]}"
    if isinstance(fn, str):
        return f"calls {str(inner.get('module'))[:80]}.{fn[:80]}"
    return "runs a Python function"


def _check_tf_op(d: dict[str, Any], at: str, in_lambda: bool, ctx: ScanContext) -> None:
    fn = _inner(d).get("function")
    if isinstance(fn, (list, dict)) and not in_lambda:
        ctx.add(
            "SC040",
            ScanVerdict.UNSAFE,
            f"{d.get('class_name')} layer {_layer_name(d)!r} carries a serialized function",
            at,
        )
    elif isinstance(fn, str) and _is_tf_gadget(fn):
        ctx.add(
            "SC041",
            ScanVerdict.UNSAFE,
            f"{d.get('class_name')} layer {_layer_name(d)!r} calls tf.{fn[:100]}, which "
            "reaches files, Python or native code",
            at,
        )


def _is_tf_gadget(symbol: str) -> bool:
    for compat in ("compat.v1.", "compat.v2."):
        symbol = symbol.removeprefix(compat)
    return any(symbol == g or symbol.startswith(g + ".") for g in _TF_GADGETS)


# ---------------------------------------------------------------- modules and names


def _object_issue(d: dict[str, Any], allow: Allowlist) -> tuple[ScanVerdict, str] | None:
    """SC041's verdict and message for an object reference, or None when it is fine."""
    cls = d.get("class_name")
    if not isinstance(cls, str) or cls in _LAMBDA_LAYERS:
        return None
    raw_registered = d.get("registered_name")
    registered = raw_registered if isinstance(raw_registered, str) else None
    if "module" not in d:
        # Keras 2 names objects by class only; 'package>Name' is a registered custom class
        if ">" in cls and not allow.allows(cls):
            return ScanVerdict.SUSPICIOUS, f"custom object {cls[:100]!r} registered by a package"
        return None
    module = d["module"]
    if cls == "function":
        return _function_issue(module, d.get("config"), registered, allow)
    if cls == "__typespec__":
        cls = str(d.get("spec_name"))
        if isinstance(module, str) and module.startswith("tensorflow.") and cls.endswith("Spec"):
            return None  # tf.TensorSpec and kin: shape and dtype descriptions
    if module is None:
        # Keras 3 writes null for classes defined in __main__; internal markers start '__'
        if cls.startswith("__") or _allowed(allow, cls, registered):
            return None
        return ScanVerdict.SUSPICIOUS, f"custom object {cls[:100]!r} from an unnamed module"
    if not isinstance(module, str):
        return ScanVerdict.SUSPICIOUS, f"object {cls[:100]!r} names module {str(module)[:60]}"
    if _in_keras(module):
        if _custom_registration(registered) and not allow.allows(str(registered)):
            return (
                ScanVerdict.SUSPICIOUS,
                f"{module[:80]}.{cls[:80]} resolves through the registered custom "
                f"name {str(registered)[:100]!r}",
            )
        return None
    return _outside_keras(f"{module}.{cls}", registered, allow, "object")


def _function_issue(
    module: object, name: object, registered: str | None, allow: Allowlist
) -> tuple[ScanVerdict, str] | None:
    if not isinstance(name, str):
        return None  # Keras cannot resolve it either
    if module is None:
        if _allowed(allow, name, registered):
            return None
        return ScanVerdict.SUSPICIOUS, f"custom function {name[:100]!r} from an unnamed module"
    if not isinstance(module, str):
        return ScanVerdict.SUSPICIOUS, f"function {name[:100]!r} names module {str(module)[:60]}"
    qualname = f"{module}.{name}"
    if module == "builtins":
        # Keras looks these names up among its own activations, losses and metrics first
        if is_dangerous(qualname):
            return ScanVerdict.UNSAFE, f"function {qualname[:160]} is a code-execution callable"
        return None
    if _in_keras(module):
        if name in _KERAS_GADGETS:
            return (
                ScanVerdict.UNSAFE,
                f"function {qualname[:160]} downloads, loads or lifts Keras's safe mode "
                "(a known safe-mode bypass)",
            )
        if _keras_area(module) not in _KERAS_NUMERIC_AREAS:
            return (
                ScanVerdict.SUSPICIOUS,
                f"function {qualname[:160]} is not an activation, loss, metric or op",
            )
        return None
    return _outside_keras(qualname, registered, allow, "function")


def _outside_keras(
    qualname: str, registered: str | None, allow: Allowlist, kind: str
) -> tuple[ScanVerdict, str] | None:
    if is_dangerous(qualname):
        return ScanVerdict.UNSAFE, f"{kind} {qualname[:160]} is a known code-execution callable"
    if allow.allows(qualname) or (registered is not None and allow.allows(registered)):
        return None
    extra = f" (registered as {registered[:100]!r})" if registered else ""
    return (
        ScanVerdict.SUSPICIOUS,
        f"custom {kind} {qualname[:160]}{extra}: loading imports a module outside Keras; "
        f"allow it with '{qualname[:160]}'",
    )


def _allowed(allow: Allowlist, name: str, registered: str | None) -> bool:
    return allow.allows(name) or (registered is not None and allow.allows(registered))


def _in_keras(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in _KERAS_ROOTS)


def _custom_registration(registered: str | None) -> bool:
    """Whether a registered name is ``package>Name`` for a package other than Keras."""
    if registered is None or ">" not in registered:
        return False
    return registered.split(">", 1)[0] not in ("keras", "tf_keras")


def _keras_area(module: str) -> str:
    """``activations`` for ``keras.activations`` and ``keras.src.activations.activations``."""
    for root in sorted(_KERAS_ROOTS, key=len, reverse=True):
        if module == root or module.startswith(root + "."):
            rest = module[len(root) + 1 :].split(".")
            if rest and rest[0] == "src":
                rest = rest[1:]
            return rest[0] if rest else ""
    return ""


def _at(where: str, detail: str) -> str:
    return " ".join(p for p in (where, detail) if p)


# ---------------------------------------------------------------- JSON inside HDF5


def _embedded_json(data: memoryview, where: str, ctx: ScanContext) -> Iterator[tuple[int, Any]]:
    """Every JSON object stored as text in ``data``: ``(offset, value)``, outermost only.

    Each ``{"`` is decoded from a window of the bytes that follows it (as Latin-1: one
    character per byte, so offsets match), widened only while the JSON is cut off by the
    window's end, so a failed candidate in binary data costs a few KiB, not the rest of the
    file. A decoded object is re-read strictly as UTF-8 before it is used. All the work is
    charged to a budget proportional to the file: a file built to make the search slow is
    reported (SC042) instead of being searched for ever.
    """
    decoder = json.JSONDecoder()
    budget = _BUDGET_FACTOR * len(data) + (1 << 20)
    errors = 0
    consumed = 0  # objects that start before this offset are inside one already decoded
    for match in _OBJECT_START.finditer(data):
        pos = match.start()
        if pos < consumed:
            continue
        end, why, cost = _decode_at(decoder, data, pos)
        budget -= cost
        if end is None:
            if why == _TOO_DEEP:
                consumed = pos + cost  # the nesting fills the window: skip what it covers
            if why == _TOO_DEEP or _KERAS_START.match(data, pos):
                errors += _decode_error(where, pos, why, errors, ctx)
        else:
            consumed = end
            try:
                value = json.loads(bytes(data[pos:end]).decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as err:
                errors += _decode_error(where, pos, f"not UTF-8 JSON ({err})", errors, ctx)
            else:
                yield pos, value
        if budget < 0:
            _gave_up(where, ctx)
            return


def _decode_at(
    decoder: json.JSONDecoder, data: memoryview, pos: int
) -> tuple[int | None, str, int]:
    """``(end offset or None, why it failed, characters examined)`` for the object at ``pos``."""
    window, cost = _WINDOW, 0
    while True:
        stop = min(pos + window, len(data))
        text = bytes(data[pos:stop]).decode("latin-1")
        cost += len(text)
        try:
            _, n = decoder.raw_decode(text)
        except RecursionError:
            return None, _TOO_DEEP, cost
        except json.JSONDecodeError as err:
            # JSON cut off by the window fails at its end, or inside a string left open
            cut = err.pos >= len(text) - 5 or err.msg.startswith("Unterminated string")
            if not cut or stop == len(data):
                return None, err.msg, cost
            window *= 4
            continue
        return pos + n, "", cost


def _decode_error(where: str, pos: int, why: str, errors: int, ctx: ScanContext) -> int:
    if errors < _MAX_DECODE_ERRORS:
        ctx.add(
            "SC042",
            ScanVerdict.ERROR,
            f"a Keras config at offset {pos} cannot be decoded: {why}",
            _at(where, f"offset {pos}"),
        )
    return 1


def _gave_up(where: str, ctx: ScanContext) -> None:
    ctx.add(
        "SC042",
        ScanVerdict.ERROR,
        "the search for Keras configs gave up: the file holds too much JSON-like text",
        where,
    )
