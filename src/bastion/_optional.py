"""Lazy imports of optional heavy dependencies, with an install hint when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from bastion.exceptions import MissingExtraError

# module name -> the extra that installs it
_EXTRA_FOR_MODULE: dict[str, str] = {
    "torch": "torch",
    "safetensors": "torch",
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "skl2onnx": "onnx",
    "fastapi": "gateway",
    "uvicorn": "gateway",
    "prometheus_client": "gateway",
    "redis": "gateway",
    "httpx": "remote",
    "psycopg": "postgres",
    "dask": "dask",
    "distributed": "dask",
    "shap": "explain",
}


def install_hint(module: str) -> str:
    """The pip command that installs ``module`` through Bastion's extras."""
    extra = _EXTRA_FOR_MODULE.get(module.split(".")[0])
    return f"pip install 'bastion[{extra}]'" if extra else f"pip install {module}"


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install.

    Example::

        torch = require("torch", "white-box attacks")
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        what = f" for {purpose}" if purpose else ""
        raise MissingExtraError(
            f"{module} is required{what} but is not installed: run {install_hint(module)}"
        ) from err
