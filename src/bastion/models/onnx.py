"""Adapter for ONNX models run by onnxruntime, with a safety check of external-data paths.

An ONNX file may keep its tensors in side files named by an ``external_data`` ``location``.
onnxruntime opens whatever path the file names, so a crafted model could read
``/etc/passwd`` or ``../../secrets`` into a tensor (and leak it through predictions).
:func:`check_external_data` parses the file with ``onnx`` (without loading the data) and
refuses any location that is absolute or resolves, symlinks included, outside the model's
folder, before onnxruntime ever sees the file.

Classifier outputs follow skl2onnx's conventions: one integer or string *label* tensor and one
*probability* output, either a float tensor (rows, classes) or, with ZipMap, a list of
``{class: probability}`` dicts. ``classes_`` comes from the ``classlabels_*`` attributes of
the graph's ZipMap or classifier node, unless given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd

from bastion._optional import require
from bastion.exceptions import ModelError, ModelOutputError, UnsafeArtifactError
from bastion.models.base import (
    PROBA_TOLERANCE,
    ArrayLike,
    Capability,
    ModelAdapter,
    ModelInfo,
    same_label,
    two_class_columns,
)
from bastion.models.formats import sha256_file

__all__ = ["OnnxAdapter", "check_external_data"]

_INPUT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}
_CLASS_ATTRS = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


def _all_tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto in a ModelProto: initializers and attributes, subgraphs included."""

    def from_graph(graph: Any) -> Iterator[Any]:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        yield from from_nodes(graph.node)

    def from_nodes(nodes: Iterable[Any]) -> Iterator[Any]:
        for node in nodes:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    yield from from_graph(attr.g)
                for sub in attr.graphs:
                    yield from from_graph(sub)

    yield from from_graph(model.graph)
    for function in model.functions:
        yield from from_nodes(function.node)
    for info in model.training_info:
        yield from from_graph(info.initialization)
        yield from from_graph(info.algorithm)


def check_external_data(model: Any, folder: str | os.PathLike[str]) -> list[str]:
    """Refuse external-data locations that leave ``folder``; return the locations used.

    Parameters:
        model: an ``onnx.ModelProto`` parsed without its external data.
        folder: the folder holding the model file.

    Returns:
        The distinct external-data locations, relative to ``folder``.

    Raises:
        UnsafeArtifactError: a location is empty, absolute, or resolves (after ``..`` and
            symlinks) outside ``folder``.

    Example::

        >>> model = onnx.load("model.onnx", load_external_data=False)  # doctest: +SKIP
        >>> check_external_data(model, "models/")  # doctest: +SKIP
        ['model.onnx.data']
    """
    onnx = require("onnx", "ONNX models")
    external = onnx.TensorProto.EXTERNAL
    root = Path(folder).resolve()
    locations: list[str] = []
    for tensor in _all_tensors(model):
        if tensor.data_location != external:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        where = f"tensor {tensor.name!r} stores its data at {location!r}"
        if not location or "\0" in location:
            raise UnsafeArtifactError(f"ONNX {where}: an empty or malformed location")
        if (
            PurePosixPath(location).is_absolute()
            or PureWindowsPath(location).is_absolute()
            or PureWindowsPath(location).drive
            or location.startswith(("/", "\\"))
        ):
            raise UnsafeArtifactError(
                f"ONNX {where}: absolute paths are refused; external data must be a relative "
                f"path inside the model folder {str(root)!r}"
            )
        target = (root / location).resolve()
        if not target.is_relative_to(root):
            raise UnsafeArtifactError(
                f"ONNX {where}, which resolves to {str(target)!r} outside the model folder "
                f"{str(root)!r}; external data must stay inside the model's folder"
            )
        if location not in locations:
            locations.append(location)
    return locations


class OnnxAdapter(ModelAdapter):
    """An ONNX classifier run by onnxruntime on the CPU.

    Capabilities: ``predict``, plus ``predict_proba`` when the graph has a probability output.
    The model must have one input; rows are cast to its element type (``float`` inputs get
    float32, the type skl2onnx writes).

    Parameters:
        session: an ``onnxruntime.InferenceSession``.
        classes: label of each probability column; read from the graph when omitted.
        info: what reports say about the model.
        label_output, proba_output: output names, when the graph's are not recognised.
        graph_classes: classes found in the graph (set by :meth:`from_file`).
        input_shape: a row's shape where the graph's input leaves it open.

    Raises:
        ModelError: the model has several inputs, an input type that is not numeric, or
            neither a label nor a probability output.

    Example::

        >>> model = OnnxAdapter.from_file("model.onnx")  # doctest: +SKIP
        >>> model.predict_proba(X_test)  # doctest: +SKIP
    """

    def __init__(
        self,
        session: Any,
        classes: Iterable[Any] | None = None,
        info: ModelInfo | None = None,
        label_output: str | None = None,
        proba_output: str | None = None,
        graph_classes: Iterable[Any] | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if info is None:
            info = ModelInfo(name="onnx-model", format="onnx")
        if classes is None:
            classes = graph_classes
        elif graph_classes is not None:
            classes = _agreed_classes(list(classes), list(graph_classes), info.name)
        super().__init__(info, classes=classes)
        self.session = session
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"ONNX model {info.name!r} has {len(inputs)} inputs "
                f"({[i.name for i in inputs]}); Bastion supports models with one input"
            )
        self.input_name: str = inputs[0].name
        if inputs[0].type not in _INPUT_DTYPES:
            raise ModelError(
                f"ONNX model {info.name!r}: input {self.input_name!r} has type "
                f"{inputs[0].type}; supported: {sorted(_INPUT_DTYPES)}"
            )
        self.input_dtype = _INPUT_DTYPES[inputs[0].type]
        # a (rows, features) input with a fixed width says how many feature columns it takes
        shape = list(inputs[0].shape or [])
        width = shape[1] if len(shape) == 2 else None
        self.n_features_in_: int | None = width if isinstance(width, int) else None
        # an image input, (rows, 1, 8, 8) say, takes flat rows of its size, as torch models do;
        # input_shape gives the row's shape where the graph leaves it open (dynamic H and W)
        inner = shape[1:]
        self.row_shape: tuple[int, ...] | None = (
            tuple(inner) if len(shape) > 2 and all(isinstance(d, int) for d in inner) else None
        )
        if input_shape is not None:
            row = tuple(int(d) for d in input_shape)
            fixed = [(g, d) for g, d in zip(row, inner, strict=False) if isinstance(d, int)]
            # an input of no declared shape ([]) takes any; a declared one, its own rank
            misfit = bool(shape) and (len(row) != len(inner) or any(g != d for g, d in fixed))
            if misfit or not row or min(row) < 1:
                raise ModelError(
                    f"ONNX model {info.name!r}: input_shape {list(row)} does not fit its "
                    f"input {self.input_name!r} of shape {shape} (a row's dimensions, the "
                    "batch left out, each at least 1)"
                )
            self.row_shape = row if len(row) > 1 else None
            if len(row) == 1:
                self.n_features_in_ = row[0]
        batch = shape[0] if shape else None
        self.fixed_batch: int | None = batch if isinstance(batch, int) else None
        outputs = {o.name: o for o in session.get_outputs()}
        self.label_output = label_output or _find_label_output(list(outputs.values()))
        self.proba_output = proba_output or _find_proba_output(list(outputs.values()))
        for given in (label_output, proba_output):
            if given is not None and given not in outputs:
                raise ModelError(
                    f"ONNX model {info.name!r} has no output {given!r}; it has {sorted(outputs)}"
                )
        if self.label_output is None and self.proba_output is None:
            raise ModelError(
                f"ONNX model {info.name!r}: found neither a label nor a probability output among "
                f"{sorted(outputs)}; pass label_output= or proba_output="
            )
        if self.label_output is None and self.classes_ is None:
            raise ModelError(
                f"ONNX model {info.name!r} has no label output; pass classes= to map "
                "probability columns to labels (model.classes in a policy, --classes on the "
                "command line)"
            )
        self._zipmap = self.proba_output is not None and outputs[self.proba_output].type.startswith(
            "seq("
        )
        caps = {Capability.PREDICT}
        if self.proba_output is not None:
            caps.add(Capability.PREDICT_PROBA)
        self.capabilities = frozenset(caps)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        classes: Iterable[Any] | None = None,
        name: str | None = None,
        sha256: str | None = None,
        input_shape: Sequence[int] | None = None,
        label_output: str | None = None,
        proba_output: str | None = None,
    ) -> OnnxAdapter:
        """Check and load an ONNX file.

        The file is read once; external-data locations are checked with
        :func:`check_external_data` before onnxruntime sees anything.

        Parameters:
            path: the ``.onnx`` file; its external data must sit in its folder.
            classes: label of each probability column (read from the graph when omitted).
            name: the model's name in reports (defaults to the file name).
            input_shape: a row's shape, e.g. ``(3, 32, 32)``, where the graph's input leaves
                it open (the graph's own fixed dimensions are used otherwise; flat rows of
                that many values are reshaped to it).
            label_output, proba_output: output names, where the graph's names and types do
                not say which output holds the labels and which the probabilities.
            sha256: the digest to record (computed from the file when omitted).

        Returns:
            The adapter; ``info.details["external_data"]`` maps each external-data file to
            its SHA-256.

        Raises:
            UnsafeArtifactError: an external-data location leaves the model folder.
            ModelError: the file is not a valid ONNX model or onnxruntime rejects it.
            MissingExtraError: onnx or onnxruntime is not installed.
        """
        onnx = require("onnx", "ONNX models")
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"ONNX model file {str(p)!r} does not exist")
        raw = p.read_bytes()
        try:
            proto = onnx.load_model_from_string(raw)
        except Exception as err:  # protobuf's DecodeError and friends
            raise ModelError(f"{str(p)!r} is not a valid ONNX model: {err}") from err
        folder = p.parent
        locations = check_external_data(proto, folder)
        ort = require("onnxruntime", "ONNX models")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not ours to show
        try:
            # Without external data, run the bytes already checked (no second read).
            source: Any = str(p) if locations else raw
            session = ort.InferenceSession(
                source, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime could not load {str(p)!r}: {err}") from err
        details: dict[str, Any] = {
            "external_data": {loc: sha256_file(folder / loc) for loc in locations},
            "producer": proto.producer_name,
            "opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
        }
        info = ModelInfo(
            name=name or p.name,
            format="onnx",
            path=str(p),
            sha256=sha256 or sha256_file(p),
            details=details,
        )
        return cls(
            session,
            classes=classes,
            info=info,
            graph_classes=_graph_classes(proto),
            input_shape=input_shape,
            label_output=label_output,
            proba_output=proba_output,
        )

    # -- inference --------------------------------------------------------------------
    def _feed(self, X: ArrayLike) -> dict[str, np.ndarray]:
        arr = X.to_numpy(dtype=self.input_dtype) if isinstance(X, pd.DataFrame) else X
        arr = np.ascontiguousarray(arr, dtype=self.input_dtype)
        if (
            self.row_shape is not None
            and arr.ndim == 2
            and arr.shape[1] == int(np.prod(self.row_shape))
        ):
            arr = arr.reshape(-1, *self.row_shape)
        return {self.input_name: arr}

    def _run(self, output: str, X: ArrayLike) -> Any:
        try:
            return self.session.run([output], self._feed(X))[0]
        except Exception as err:  # onnxruntime's own error types
            rows = int(np.shape(X)[0]) if np.ndim(X) else 0
            hint = (
                f" (its graph fixes the batch dimension at {self.fixed_batch} rows and was "
                f"given {rows}: export it with a dynamic batch dimension)"
                if self.fixed_batch is not None and rows != self.fixed_batch
                else ""
            )
            raise ModelError(
                f"ONNX model {self.info.name!r} failed on the input{hint}: {err}"
            ) from err

    def _predict(self, X: ArrayLike) -> np.ndarray:
        if self.label_output is not None:
            return np.asarray(self._run(self.label_output, X))
        proba = self._proba_array(X)
        if self.classes_ is None or proba.ndim != 2:  # pragma: no cover - checked in __init__
            return proba
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])

    def _predict_proba(self, X: ArrayLike) -> np.ndarray:
        return self._proba_array(X)

    def _proba_array(self, X: ArrayLike) -> np.ndarray:
        if self.proba_output is None:  # pragma: no cover - capability checked first
            return super()._predict_proba(X)
        out = self._run(self.proba_output, X)
        if not self._zipmap:
            arr = np.asarray(out)
            if self.classes_ is not None and len(self.classes_) == 2 and _one_column(arr):
                # one probability per row, as a binary model ending in a sigmoid exports it:
                # P(the second class); read as two columns (predict gave the first class to
                # every row, argmax over one column)
                p = arr.reshape(-1).astype(np.float64)
                if p.size and (p.min() < -PROBA_TOLERANCE or p.max() > 1 + PROBA_TOLERANCE):
                    raise ModelOutputError(
                        f"ONNX model {self.info.name!r}: its output {self.proba_output!r} holds "
                        f"one value per row outside [0, 1] (min {p.min():.6g}, max "
                        f"{p.max():.6g}): a logit, not a probability. Export the model with "
                        "its final sigmoid"
                    )
                return two_class_columns(p)
            return arr
        # ZipMap: one {class: probability} dict per row.
        if self.classes_ is None:
            keys = list(out[0].keys()) if len(out) else []
            self.classes_ = np.asarray(keys)
        classes = self.classes_.tolist()
        return np.array([[row[c] for c in classes] for row in out], dtype=np.float64).reshape(
            len(out), len(classes)
        )


def _one_column(arr: np.ndarray) -> bool:
    """Whether an output holds one value per row: shape (rows,) or (rows, 1)."""
    return arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1)


def _find_label_output(outputs: list[Any]) -> str | None:
    for out in outputs:
        if out.type in ("tensor(int64)", "tensor(int32)", "tensor(string)") and len(
            out.shape or []
        ) in (1, 0):
            return str(out.name)
    return None


def _find_proba_output(outputs: list[Any]) -> str | None:
    for out in outputs:
        if out.type.startswith("seq(map("):
            return str(out.name)
    tables = [
        str(out.name)
        for out in outputs
        if out.type in ("tensor(float)", "tensor(double)") and len(out.shape or []) == 2
    ]
    # by name where the graph has several (label, logits, probs: the logits came first and
    # were read as probabilities, and the model refused); else the first
    for hint in ("prob", "softmax"):
        # log_probs, log_softmax: logarithms, no probabilities
        named = [t for t in tables if hint in t.lower() and "log" not in t.lower()]
        if named:
            return named[0]
    unnamed = [t for t in tables if "logit" not in t.lower()]
    chosen = unnamed or tables
    return chosen[0] if chosen else None


def _agreed_classes(given: list[Any], graph: list[Any], name: str) -> list[Any]:
    """The graph's classes, when the ones given name the same labels in the same order (as
    text: a policy's "0" is the graph's 0); else a :class:`ModelError`. Given classes in
    another order relabelled the probability columns while the label output stayed right: a
    black-box attack pushed the wrong class and a fragile model passed (robust accuracy
    0.98 for 0.34)."""
    if len(given) != len(graph) or not all(map(same_label, given, graph)):
        raise ModelError(
            f"ONNX model {name!r}: classes {given} differ from the classes its graph declares "
            f"{graph} (the order of its probability columns); leave model.classes out, or "
            "give the graph's"
        )
    return graph


def _graph_classes(model: Any) -> list[Any] | None:
    """Class labels from the ZipMap node, else from the classifier node's attributes."""
    nodes = list(model.graph.node)
    nodes.sort(key=lambda n: n.op_type != "ZipMap")  # ZipMap's keys are what users see
    for node in nodes:
        for attr in node.attribute:
            if attr.name in _CLASS_ATTRS:
                if attr.ints:
                    return [int(v) for v in attr.ints]
                if attr.strings:
                    return [s.decode("utf-8") for s in attr.strings]
    return None
