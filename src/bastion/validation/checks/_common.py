"""Helpers shared by the validation checks."""

from __future__ import annotations

from typing import Any, TypeVar

from bastion.checks import CheckConfig
from bastion.exceptions import ConfigError

C = TypeVar("C", bound=CheckConfig)


def config_as(config: CheckConfig, cls: type[C]) -> C:
    """``config`` as the check's own config class (a bare ``CheckConfig`` gets the defaults)."""
    if isinstance(config, cls):
        return config
    if type(config) is CheckConfig:
        return cls.model_validate(config.model_dump())
    raise ConfigError(f"config must be a {cls.__qualname__}; received {type(config).__qualname__}")


def json_label(label: Any) -> Any:
    """A class label as a JSON scalar (numpy integers and floats become Python numbers)."""
    item = getattr(label, "item", None)
    return item() if callable(item) else label
