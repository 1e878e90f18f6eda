"""Helpers shared by the validation checks."""

from __future__ import annotations

from typing import Any

from bastion.checks import config_as

__all__ = ["config_as", "json_label"]


def json_label(label: Any) -> Any:
    """A class label as a JSON scalar (numpy integers and floats become Python numbers)."""
    item = getattr(label, "item", None)
    return item() if callable(item) else label
