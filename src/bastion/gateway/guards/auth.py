"""Authentication and role checks for the gateway, with the registry's API tokens.

Every route but the health probes carries ``Authorization: Bearer <token>``; the token is one
the registry issued (:mod:`bastion.governance.access`): unknown, revoked, expired or disabled
-> 401; a role the route's operation does not allow -> 403 (the matrix is
:data:`bastion.governance.access.PERMISSIONS`). Lookups are cached for ``cache_ttl_s`` seconds
(a revoked token stops working within that time) so a request costs no database round trip.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bastion.governance.access import (
    AccessControl,
    AccessDeniedError,
    AuthenticationError,
    Identity,
    hash_token,
)

__all__ = ["GuardRejectedError", "TokenAuthorizer"]


@dataclass(eq=False)  # not frozen: frameworks set __traceback__ on exceptions they handle
class GuardRejectedError(Exception):
    """A guard refused the request: HTTP ``status``, a message, optional headers."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()
    guard: str = ""  # which guard (metrics count rejections by it); inferred when empty


class TokenAuthorizer:
    """``authorizer(authorization_header, operation) -> Identity``, raising
    :class:`GuardRejectedError` (401 / 403).

    Example::

        >>> auth = TokenAuthorizer(AccessControl(engine))          # doctest: +SKIP
        >>> auth("Bearer bst_...", "serve.infer").name
        'alice'
    """

    def __init__(
        self,
        access: AccessControl,
        *,
        cache_ttl_s: float = 5.0,
        max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.access = access
        self.cache_ttl_s = cache_ttl_s
        self.max_cached = max_cached
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Identity | AuthenticationError]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, authorization: str | None, operation: str) -> Identity:
        token = _bearer(authorization)
        identity = self._identity(token)
        if not self.access.allowed(identity, operation):
            raise GuardRejectedError(403, str(_denied(identity, operation)))
        return identity

    def _identity(self, token: str | None) -> Identity:
        if token is None:
            raise GuardRejectedError(401, "missing bearer token", (("WWW-Authenticate", "Bearer"),))
        key = hash_token(token)  # never keep the token itself in memory longer than needed
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self.cache_ttl_s:
                self._cache.move_to_end(key)
                result = hit[1]
            else:
                result = None
        if result is None:
            try:
                result = self.access.authenticate(token)
            except AuthenticationError as err:
                result = err
            with self._lock:
                self._cache[key] = (now, result)
                while len(self._cache) > self.max_cached:
                    self._cache.popitem(last=False)
        if isinstance(result, AuthenticationError):
            raise GuardRejectedError(401, str(result), (("WWW-Authenticate", "Bearer"),))
        return result


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _denied(identity: Identity, operation: str) -> AccessDeniedError:
    from bastion.governance.access import PERMISSIONS

    allowed = ", ".join(sorted(PERMISSIONS[operation]))
    return AccessDeniedError(
        f"{identity.name} ({identity.role}) may not {operation}; it needs one of: {allowed}"
    )
