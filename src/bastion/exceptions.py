"""Bastion's exceptions, in one place.

Every exception also subclasses the matching built-in, so callers can catch either::

    BastionError (Exception)
    ├── ConfigError (ValueError)          a policy file or option is wrong
    ├── DataError (ValueError)            a dataset cannot be read or does not fit its spec
    │   ├── EmptyDataError                the file holds no rows
    │   ├── BinaryTensorError             a binary tensor section contradicts its header
    │   └── DecryptionError               an encrypted file failed a check
    ├── ModelError (ValueError)           a model cannot be loaded or called
    │   ├── ModelOutputError              its output has NaNs or the wrong shape
    │   ├── UnsafeArtifactError (PermissionError)
    │   │                                 loading would deserialize untrusted code
    │   └── RemoteModelError (ConnectionError)
    │                                     a remote endpoint failed or answered badly
    ├── CapabilityError (TypeError)       a check or attack needs what the model lacks
    ├── TimeBudgetError (TimeoutError)    work that spends no queries ran out of wall time
    ├── MissingExtraError (ImportError)   an optional dependency is not installed
    └── RateLimiterUnavailableError (ConnectionError)
                                          the rate limiter's store cannot be reached

A finding is data, never an exception: checks that fail return ``Finding`` objects; these
exceptions mean the tool could not do its job (CLI exit code 2).
"""

from __future__ import annotations

__all__ = [
    "BastionError",
    "BinaryTensorError",
    "CapabilityError",
    "ConfigError",
    "DataError",
    "DecryptionError",
    "EmptyDataError",
    "MissingExtraError",
    "ModelError",
    "ModelOutputError",
    "RateLimiterUnavailableError",
    "RemoteModelError",
    "TimeBudgetError",
    "UnsafeArtifactError",
]


class BastionError(Exception):
    """Base class of every error Bastion raises on purpose."""


class ConfigError(BastionError, ValueError):
    """A policy file, a configuration value or a command-line option is invalid."""


class DataError(BastionError, ValueError):
    """A dataset cannot be read, or does not match what the policy declares."""


class EmptyDataError(DataError):
    """A dataset file holds no rows."""


class BinaryTensorError(DataError):
    """A request's binary tensor section does not match what its JSON header declares.

    A client error (HTTP 400). The message names the input and the mismatch.
    """


class DecryptionError(DataError):
    """An encrypted file failed a check; ``path`` names it and ``chunk`` the chunk, if any."""

    def __init__(self, path: str, message: str, chunk: int | None = None) -> None:
        where = path if chunk is None else f"{path}, chunk {chunk}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.chunk = chunk


class ModelError(BastionError, ValueError):
    """A model cannot be loaded or called."""


class ModelOutputError(ModelError):
    """A model returned NaN values or an output of the wrong shape."""


class UnsafeArtifactError(ModelError, PermissionError):
    """Loading an artifact would deserialize code that nobody vouched for."""


class RemoteModelError(ModelError, ConnectionError):
    """A remote model endpoint failed, timed out or answered with a malformed body."""


class CapabilityError(BastionError, TypeError):
    """A check or attack requires a model capability that the adapter does not declare."""


class TimeBudgetError(BastionError, TimeoutError):
    """A detector's or a trainer's work (which spends no queries, so an attack's query loop
    never stops it) reached the wall-time deadline of :func:`bastion._deadline.wall_deadline`
    between two of its stages; the message names the stage."""


class RemoteDeadlineError(RemoteModelError):
    """A remote endpoint failed (an error status, throttling) until the wall-time budget left
    no time for another attempt: an attack that can stop with what it has (extraction)
    reads it as its time budget running out."""


class MissingExtraError(BastionError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class RateLimiterUnavailableError(BastionError, ConnectionError):
    """The limiter's store (Redis) cannot be reached; the gateway answers 503, never 'allow'."""
