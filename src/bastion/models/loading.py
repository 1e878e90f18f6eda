"""Load a model file (or folder, or remote endpoint) into a :class:`ModelAdapter`, safely.

The format is read from the file's content (:func:`bastion.models.formats.detect_format`),
never from its extension, so a pickle renamed ``model.onnx`` is still a pickle.

Scan before load, fail closed: every file is scanned (:mod:`bastion.supply`) before anything
reads it as a model. Pickle-family files (pickle, joblib, ``torch.save`` archives) are read
into memory once; those bytes are scanned and, when the verdict is ``safe``, loaded through
an unpickler that admits only the allowlisted globals (so a gap between scanner and loader
cannot run code). A file whose scan is not clean is refused with
:class:`UnsafeArtifactError` naming the findings, unless the caller passes
``trust_pickle=True``: then it loads with the stock unpickler and ``ModelInfo.trusted_override``
(recorded in the report) is True. ``ModelInfo.details["scan"]`` holds the scan's verdict,
findings and the sha256 of the scanned bytes. TorchScript archives and unknown formats are
always refused.

Example::

    >>> model = load_model("model.onnx")          # doctest: +SKIP
    >>> model.info.sha256                          # doctest: +SKIP
    '3a7bd3e2360a3d...'
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.exceptions import ConfigError, ModelError, UnsafeArtifactError
from bastion.models.base import ModelAdapter, ModelInfo, same_label
from bastion.models.formats import FORMATS, PICKLE_FAMILY, detect_format, sha256_path

if TYPE_CHECKING:
    from bastion.supply.allowlist import Allowlist
    from bastion.supply.results import FileScan

__all__ = ["LOADABLE_FORMATS", "detect_format", "load_model"]

LOADABLE_FORMATS = ("onnx", "torch-export", "safetensors", "pickle", "torch-pickle")
SCAN_REFUSED = (
    "{path!r} ({fmt}) did not scan clean (verdict {verdict}): {findings}. Bastion loads "
    "only files whose scan is clean. Convert the model to ONNX, torch.export (.pt2) or "
    "safetensors; add classes you trust to scan.allow in bastion.yaml; or, if you trust where "
    "the file came from, pass trust_pickle=True (--trust-pickle; in bastion.yaml: "
    "model.trust_pickle: true); "
    "the report records that override."
)
_log = logging.getLogger(__name__)


def _model_file_in(folder: Path) -> Path:
    """The one model file in ``folder`` (side files such as ONNX external data are skipped)."""
    found = []
    for candidate in sorted(folder.rglob("*")):
        if candidate.is_file() and not candidate.name.startswith("."):
            fmt = detect_format(candidate)
            if fmt != "unknown":
                found.append((candidate, fmt))
    if len(found) != 1:
        listed = [f"{p.relative_to(folder)} ({fmt})" for p, fmt in found]
        raise ModelError(
            f"model folder {str(folder)!r} must hold exactly one model file; found "
            f"{len(found)}: {listed}"
        )
    return found[0][0]


def load_model(
    path: str | os.PathLike[str] | None = None,
    *,
    format: str = "auto",
    trust_pickle: bool = False,
    factory: str | None = None,
    name: str | None = None,
    remote: Any = None,
    classes: Iterable[Any] | None = None,
    input_shape: Sequence[int] | None = None,
    allow: Allowlist | None = None,
    device: str = "cpu",
    label_output: str | None = None,
    proba_output: str | None = None,
) -> ModelAdapter:
    """Load a model into an adapter, after a scan.

    Parameters:
        path: a model file, or a folder holding exactly one model file (plus side files).
        format: ``"auto"`` (detect from content) or one of ``"onnx"``, ``"torch-export"``,
            ``"safetensors"``, ``"pickle"``, ``"torch-pickle"``; an explicit format must agree
            with the content when the content is recognised.
        trust_pickle: load a file whose scan is not clean (and ``.pt2`` archives holding
            pickles) with the stock loaders. Only for files whose origin you trust; recorded
            as ``info.trusted_override``.
        factory: ``"package.module:function"`` building the ``nn.Module`` for safetensors
            weights.
        name: the model's name in reports (defaults to the file name).
        remote: a :class:`bastion.models.remote.RemoteEndpoint` instead of a path.
        classes: label of each probability column, for formats that do not store them.
        input_shape: shape of one row, e.g. ``(1, 8, 8)``: for torch models, and for ONNX
            graphs whose input leaves a row's dimensions open.
        allow: the scan's allowlist (default: the built-in one; the policy's ``scan.allow``
            extends it).
        device: where a torch model runs: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``
            (CUDA when torch sees a device). Other models run where their runtime puts them:
            asking them for CUDA is an error.
        label_output, proba_output: an ONNX graph's (or a remote endpoint's) output names
            for the labels and the probabilities, where their names do not say which is
            which.

    Returns:
        The adapter; ``adapter.info`` carries name, format, path and SHA-256 (of the file, or
        of every file in the folder).

    Raises:
        UnsafeArtifactError: a file whose scan is not clean, without ``trust_pickle``; a
            TorchScript archive; an ONNX file whose external data leaves its folder.
        ModelError: the file is missing, of an unknown format, or does not load.
        ConfigError: the arguments contradict each other (both or neither of ``path`` and
            ``remote``, a ``factory`` without safetensors weights, an unknown ``format``).
        MissingExtraError: the format's optional dependency is not installed.

    Example::

        >>> load_model("model.joblib")  # doctest: +SKIP
        Traceback (most recent call last):
        UnsafeArtifactError: 'model.joblib' (pickle) did not scan clean (verdict unsafe): ...
        >>> load_model("weights.safetensors", factory="mypkg.nets:make_mlp")  # doctest: +SKIP
    """
    if (path is None) == (remote is None):
        raise ConfigError("load_model needs exactly one of path= or remote=")
    if format != "auto" and format not in LOADABLE_FORMATS:
        raise ConfigError(
            f"format must be 'auto' or one of {list(LOADABLE_FORMATS)}; received {format!r}"
        )
    if remote is not None:
        from bastion.models.remote import RemoteAdapter, RemoteEndpoint

        if not isinstance(remote, RemoteEndpoint):
            raise ConfigError(f"remote must be a RemoteEndpoint; received {type(remote).__name__}")
        # the endpoint's outputs where their names are not the convention's (an ONNX graph
        # served by Triton answers with output_label / output_probability): it could not be
        # attacked at all
        if label_output is not None and label_output == proba_output:
            raise ConfigError(
                f"label_output and proba_output both name output {label_output!r}: the labels "
                "and the probabilities are two outputs"
            )
        # a name given for one is no longer read as the other (proba_output "predict" stayed
        # among the default label names, and the probabilities were read as labels)
        if label_output is not None:
            remote = dataclasses.replace(
                remote,
                label_outputs=(label_output,),
                proba_outputs=tuple(o for o in remote.proba_outputs if o != label_output),
            )
        if proba_output is not None:
            remote = dataclasses.replace(
                remote,
                proba_outputs=(proba_output,),
                label_outputs=tuple(o for o in remote.label_outputs if o != proba_output),
            )
        remote_adapter = RemoteAdapter(remote, name=name)
        _check_device(remote_adapter, device)
        return remote_adapter

    given = Path(os.fspath(path))  # type: ignore[arg-type]  # None excluded above
    if given.is_dir():
        file = _model_file_in(given)
    elif given.is_file():
        file = given
    else:
        raise ModelError(f"model path {str(given)!r} does not exist")
    detected = detect_format(file)
    fmt = detected if format == "auto" else format
    if format != "auto" and detected not in ("unknown", format):
        raise ModelError(f"{str(file)!r} was declared {format!r} but its content is {detected!r}")
    if fmt == "torchscript":
        raise UnsafeArtifactError(
            f"{str(file)!r} is a TorchScript archive (code plus pickles; deprecated since torch "
            "2.13). Export the model with torch.export.save (.pt2) or save its weights as "
            "safetensors with a factory"
        )
    if fmt == "unknown":
        raise ModelError(
            f"cannot tell the format of {str(file)!r} from its content; supported: "
            f"{[f for f in FORMATS if f not in ('unknown', 'torchscript')]}"
        )
    if factory is not None and fmt != "safetensors":
        raise ConfigError(f"factory= applies to safetensors weights; {str(file)!r} is {fmt!r}")
    for key, value in (("label_output", label_output), ("proba_output", proba_output)):
        if value is not None and fmt != "onnx":
            raise ConfigError(f"{key}= applies to ONNX models; {str(file)!r} is {fmt!r}")
    from bastion.supply import DEFAULT_ALLOWLIST, scan_bytes, scan_path

    allowlist = allow if allow is not None else DEFAULT_ALLOWLIST
    data: bytes | None = None
    if fmt in PICKLE_FAMILY:
        # read once: the bytes scanned are the bytes loaded
        data = file.read_bytes()
        scan = scan_bytes(data, str(file), base_dir=file.parent, allow=allowlist)
    else:
        scan = scan_path(file, allow=allowlist)
    if not scan.safe:
        if not trust_pickle:
            raise UnsafeArtifactError(
                SCAN_REFUSED.format(
                    path=str(file), fmt=fmt, verdict=scan.verdict.value, findings=_brief(scan)
                )
            )
        _log.warning(
            "loading %s despite its scan (verdict %s) on explicit trust",
            file,
            scan.verdict.value,
        )

    # the scan already hashed the file's bytes; a folder's digest covers its side files too
    digest = scan.sha256 if given.is_file() else sha256_path(given)
    info_path = str(given)
    label = name or given.name
    overridden = not scan.safe
    scan_details = _scan_details(scan, overridden)

    if fmt == "onnx":
        from bastion.models.onnx import OnnxAdapter

        adapter: ModelAdapter = OnnxAdapter.from_file(
            file,
            classes=classes,
            name=label,
            sha256=digest,
            input_shape=input_shape,
            label_output=label_output,
            proba_output=proba_output,
        )
    elif fmt in ("torch-export", "safetensors"):
        adapter = _load_torch(
            file, fmt, factory, trust_pickle, label, info_path, digest, classes, input_shape,
            device,
        )  # fmt: skip
    else:
        assert data is not None  # read above for every pickle-family format
        adapter = _load_pickle(
            data, file, fmt, label, info_path, digest, classes, input_shape, allowlist,
            overridden, device,
        )  # fmt: skip
    _check_device(adapter, device)
    _check_estimator_options(adapter, classes, input_shape)
    if data is None and sha256_path(file) != scan.sha256:
        raise UnsafeArtifactError(
            f"{str(file)!r} changed while it was loaded (sha256 {scan.sha256} when scanned)"
        )
    adapter.info.details["scan"] = scan_details
    if overridden and not adapter.info.trusted_override:
        adapter.info = dataclasses.replace(adapter.info, trusted_override=True)
    return adapter


def _brief(scan: FileScan, limit: int = 3) -> str:
    shown = [f"{f.rule} {f.message}" for f in scan.findings[:limit]]
    more = len(scan.findings) - limit
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _scan_details(scan: FileScan, overridden: bool) -> dict[str, Any]:
    return {
        "verdict": scan.verdict.value,
        "format": scan.format,
        "sha256": scan.sha256,
        "findings": [f.to_dict() for f in scan.findings[:20]],
        "override": overridden,
    }


def _load_torch(
    file: Path,
    fmt: str,
    factory: str | None,
    trust_pickle: bool,
    label: str,
    info_path: str,
    digest: str,
    classes: Iterable[Any] | None,
    input_shape: Sequence[int] | None,
    device: str,
) -> ModelAdapter:
    from bastion.models.torch import (
        TorchAdapter,
        check_pt2_archive,
        export_row_shape,
        load_torch_export_program,
        load_torch_safetensors,
    )

    details: dict[str, Any] = {}
    trusted = False
    if fmt == "torch-export":
        if trust_pickle:
            unsafe = check_pt2_archive(file.read_bytes(), str(file))
            trusted = bool(unsafe)
            if unsafe:
                details["unpickled_members"] = unsafe
                _log.warning("loading %s with pickled members on explicit trust", file)
        program = load_torch_export_program(file, trust_pickle=trust_pickle)
        module = _export_on(program, device).module()
        if input_shape is None:
            # the archive records the example it was exported with: flat rows of a CSV are
            # reshaped to it without --input-shape
            input_shape = export_row_shape(program)
            if input_shape is not None:
                details["input_shape"] = list(input_shape)
                details["input_shape_source"] = "the exported program's example input"
    else:
        if factory is None:
            raise ConfigError(
                f"{str(file)!r} holds safetensors weights only; name the function that "
                "builds the nn.Module, 'package.module:function' (--factory on the command "
                "line, model.factory in a policy, factory= in load_model)"
            )
        module = load_torch_safetensors(factory, file)
        details["factory"] = factory
    info = ModelInfo(
        name=label,
        format=fmt,
        path=info_path,
        sha256=digest,
        trusted_override=trusted,
        details=details,
    )
    return TorchAdapter(module, classes=classes, input_shape=input_shape, info=info, device=device)


def _export_on(program: Any, device: str) -> Any:
    """``program`` moved to ``device``: ``nn.Module.to`` would move the parameters but not
    the device that ops creating tensors in the forward pass (``arange``, ``zeros``) recorded
    at export, and every forward pass on another device would fail."""
    from bastion.models.torch import resolve_device

    target = resolve_device(device)
    if target == "cpu":
        return program
    from torch.export.passes import move_to_device_pass

    return move_to_device_pass(program, target)


def _check_device(adapter: ModelAdapter, device: str) -> None:
    """A device other than the CPU applies to torch models only."""
    from bastion.models.torch import TorchAdapter  # torch itself is imported lazily there

    if str(device).strip().lower() in ("cpu", "auto") or isinstance(adapter, TorchAdapter):
        return
    raise ConfigError(
        f"device {device!r} applies to torch models; {adapter.info.name!r} is "
        f"{adapter.info.format} and runs where its runtime puts it (use cpu or auto)"
    )


def _check_estimator_options(
    adapter: ModelAdapter, classes: Iterable[Any] | None, input_shape: Sequence[int] | None
) -> None:
    """An estimator names its own classes and reads flat rows: ``classes`` must match its
    ``classes_`` and ``input_shape`` does not apply (both were dropped silently, so
    ``--classes 1,0`` ran against an estimator of classes [0, 1] as if agreed)."""
    from bastion.models.sklearn import SklearnAdapter

    if not isinstance(adapter, SklearnAdapter):
        return
    if input_shape is not None:
        raise ConfigError(
            f"input_shape applies to torch and ONNX models; {adapter.info.name!r} is an "
            "estimator, which reads flat rows"
        )
    if classes is None:
        return
    given = list(classes)
    own = None if adapter.classes_ is None else adapter.classes_.tolist()
    if own is None:
        raise ConfigError(
            f"classes apply to models that do not name them; estimator {adapter.info.name!r} "
            "has no classes_ to check them against"
        )
    # compared as the ONNX loader compares them (a policy's "0" is an estimator's 0)
    if len(given) != len(own) or not all(map(same_label, given, own)):
        raise ConfigError(
            f"classes {given[:12]} do not match estimator {adapter.info.name!r}'s own classes_ "
            f"{own[:12]} (an estimator names its classes; leave classes out)"
        )


def _load_pickle(
    data: bytes,
    file: Path,
    fmt: str,
    label: str,
    info_path: str,
    digest: str,
    classes: Iterable[Any] | None,
    input_shape: Sequence[int] | None,
    allow: Allowlist,
    overridden: bool,
    device: str,
) -> ModelAdapter:
    """Unpickle the scanned bytes: restricted unpicklers after a clean scan, the stock ones
    on an explicit override."""
    from bastion.supply import safe_load

    try:
        if overridden:
            _log.warning("deserializing %s with the stock unpickler on explicit trust", file)
            obj = _load_unrestricted(data, fmt)
        elif fmt == "torch-pickle" or data[:4] == b"PK\x03\x04":
            obj = safe_load.load_torch_bytes(data, allow=allow)
        else:
            obj = safe_load.load_joblib_bytes(data, allow=allow)
    except UnsafeArtifactError:
        raise
    except Exception as err:  # unpickling raises anything
        raise ModelError(f"cannot unpickle {str(file)!r}: {err}") from err
    info = ModelInfo(
        name=label,
        format=fmt,
        path=info_path,
        sha256=digest,
        trusted_override=overridden,
        details={"object_type": f"{type(obj).__module__}.{type(obj).__qualname__}"},
    )
    if callable(getattr(obj, "predict", None)):
        from bastion.models.sklearn import SklearnAdapter

        return SklearnAdapter(obj, info=info)
    if _is_torch_module(obj):
        from bastion.models.torch import TorchAdapter

        return TorchAdapter(obj, classes=classes, input_shape=input_shape, info=info, device=device)
    raise ModelError(
        f"{str(file)!r} holds a {info.details['object_type']}, which is neither an estimator "
        "with predict() nor a torch.nn.Module"
    )


def _load_unrestricted(data: bytes, fmt: str) -> Any:
    import io

    if fmt == "torch-pickle":
        from bastion._optional import require

        torch = require("torch", "torch.save archives")
        return torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")
    import joblib  # reads plain pickles and every joblib compression

    return joblib.load(io.BytesIO(data))


def _is_torch_module(obj: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)
