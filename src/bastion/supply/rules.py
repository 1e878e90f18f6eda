"""Stable ids of the scanner's rules, with one line each (the SARIF rule table reads this).

Ids never change meaning; new rules take new ids.
"""

from __future__ import annotations

__all__ = ["RULES"]

RULES: dict[str, str] = {
    # pickle streams
    "SC001": "pickle imports a callable outside the allowlist",
    "SC002": "pickle imports a known code-execution callable",
    "SC003": "pickle builds an import name at load time (not a literal string)",
    "SC004": "pickle uses an extension code (resolved by the loading process)",
    "SC005": "pickle stream is malformed or truncated",
    "SC006": "data follows the last pickle stream",
    "SC007": "pickle asks the loader for persistent objects outside a torch archive",
    "SC008": "pickle calls or modifies an object that is not an imported class",
    "SC009": "allowlisted class pinned to a module file whose sha256 differs",
    # containers and compression
    "SC010": "archive member path escapes the extraction folder",
    "SC011": "decompressed size over the limit (decompression bomb)",
    "SC012": "archives nested deeper than the limit",
    "SC013": "archive headers disagree or hide a member (duplicate, encrypted, mismatched)",
    "SC014": "archive or compressed stream is corrupt",
    "SC015": "archive member is a link or a device",
    # ONNX
    "SC020": "ONNX external data outside the model folder",
    "SC021": "ONNX custom operator domain",
    "SC022": "ONNX model is malformed or references missing external data",
    # safetensors
    "SC030": "safetensors header is invalid",
    "SC031": "safetensors file that is also a pickle stream (a polyglot)",
    # Keras
    "SC040": "Keras Lambda layer (serialized Python code)",
    "SC041": "Keras custom object or module outside Keras",
    "SC042": "Keras file is malformed",
    # torch, numpy
    "SC050": "TorchScript code inside the archive",
    "SC051": "NumPy file is malformed",
    # anything else
    "SC090": "unrecognised binary format",
    "SC091": "file could not be read",
}
