"""Load pickle-family bytes through unpicklers that admit only allowlisted globals.

The scanner decides before loading; these unpicklers enforce the same allowlist while
loading, so a difference between what the scanner understood and what the unpickler does
(a parser quirk, a file swapped between scan and load) cannot reach a callable outside the
list: ``find_class`` refuses it with :class:`~bastion.exceptions.UnsafeArtifactError`.

- plain pickles: :class:`RestrictedUnpickler` (``pickle.Unpickler`` with ``find_class``
  checked);
- joblib files (every compression): joblib's own ``NumpyUnpickler`` with the same check, and
  object arrays, which joblib reads with a bare ``pickle.load``, read with the restricted
  unpickler instead;
- ``torch.save`` archives: ``torch.load`` with this module's restricted ``Unpickler`` as its
  ``pickle_module``.

Callers load bytes they already scanned (:func:`bastion.supply.scan_bytes`), never a path
that could change in between.
"""

from __future__ import annotations

import io
import pickle
import types
from typing import Any

from bastion.exceptions import UnsafeArtifactError
from bastion.supply.allowlist import DEFAULT_ALLOWLIST, Allowlist

__all__ = ["RestrictedUnpickler", "load_joblib_bytes", "load_pickle_bytes", "load_torch_bytes"]


def _refuse(module: str, name: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(
        f"the file imports {module}.{name}, which is not on the allowlist; add it to "
        "scan.allow in bastion.yaml if you trust it"
    )


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only allowlisted names.

    Example::

        >>> RestrictedUnpickler(io.BytesIO(data)).load()   # doctest: +SKIP
    """

    def __init__(self, file: Any, *, allow: Allowlist = DEFAULT_ALLOWLIST, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._allow = allow

    def find_class(self, module: str, name: str) -> Any:
        if not self._allow.allows(f"{module}.{name}"):
            raise _refuse(module, name)
        return super().find_class(module, name)


def load_pickle_bytes(data: bytes, *, allow: Allowlist = DEFAULT_ALLOWLIST) -> Any:
    """Unpickle one stream with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data), allow=allow).load()


def load_joblib_bytes(data: bytes, *, allow: Allowlist = DEFAULT_ALLOWLIST) -> Any:
    """Load a ``joblib.dump`` file (any compression, or a plain pickle) from bytes."""
    from joblib import numpy_pickle
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

    base = numpy_pickle.NumpyUnpickler

    class _Restricted(base):  # type: ignore[misc, valid-type]
        dispatch = base.dispatch.copy()

        def find_class(self, module: str, name: str) -> Any:
            if not allow.allows(f"{module}.{name}"):
                raise _refuse(module, name)
            return super().find_class(module, name)

        def load_build(self) -> None:
            # joblib's BUILD, except that object arrays (a nested pickle joblib reads with a
            # bare pickle.load) go through the restricted unpickler
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
            wrapper = self.stack[-1]
            if isinstance(wrapper, numpy_pickle.NDArrayWrapper):
                raise UnsafeArtifactError(
                    "joblib < 0.10 file: its arrays live in companion files loaded without "
                    "the allowlist; re-save it with a current joblib"
                )
            if not isinstance(wrapper, numpy_pickle.NumpyArrayWrapper):
                return
            self.stack.pop()
            if wrapper.dtype.hasobject:
                array = RestrictedUnpickler(self.file_handle, allow=allow).load()
            else:
                array = wrapper.read(self, self.ensure_native_byte_order)
            self.stack.append(array)

        dispatch[pickle.BUILD[0]] = load_build

    with _validate_fileobject_and_memmap(io.BytesIO(data), "", None) as (fobj, _):
        if isinstance(fobj, str):
            raise UnsafeArtifactError("joblib < 0.10 file: re-save it with a current joblib")
        return _Restricted("", fobj, True).load()


def load_torch_bytes(data: bytes, *, allow: Allowlist = DEFAULT_ALLOWLIST) -> Any:
    """``torch.load`` of a ``torch.save`` archive (zip or legacy) with the restricted
    unpickler (CPU tensors)."""
    from bastion._optional import require

    torch = require("torch", "torch.save archives")

    class _Unpickler(RestrictedUnpickler):
        def __init__(self, file: Any, **kwargs: Any) -> None:
            super().__init__(file, allow=allow, **kwargs)

    module = types.ModuleType("bastion_restricted_pickle")
    module.Unpickler = _Unpickler  # type: ignore[attr-defined]
    module.load = lambda f, **kw: _Unpickler(f, **kw).load()  # type: ignore[attr-defined]
    module.__dict__["UnpicklingError"] = pickle.UnpicklingError
    return torch.load(
        io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=module
    )
