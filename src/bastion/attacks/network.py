"""The controlled environment's network rule: attacks reach no host but the endpoint named.

While an attack runs, :func:`only_endpoints` refuses every outgoing IP connection whose host is
not one of the given endpoints (the remote model under test). Local inter-process sockets
(``AF_UNIX``, used by process pools) are untouched. A refused connection raises
:class:`PermissionError` naming the host, so an attack that tried to phone home fails loudly
instead of leaking data.

It patches ``socket.socket.connect`` / ``connect_ex`` for the duration of the block; it guards
Python code in this process, not native extensions that open their own sockets.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

__all__ = ["host_of", "only_endpoints"]

_LOCK = threading.Lock()


def host_of(url: str) -> str:
    """The host name of an endpoint URL (``https://models.example:8443/v2`` -> the host)."""
    return (urlsplit(url).hostname or "").lower()


@contextmanager
def only_endpoints(urls: Iterable[str]) -> Iterator[None]:
    """Refuse IP connections to any host but those of ``urls`` inside the block.

    Example::

        with only_endpoints(["https://models.example"]):
            result = Square().run(remote_model, X, y, eps=0.5)
    """
    allowed_names = {host_of(u) for u in urls if host_of(u)}
    allowed_ips = _addresses(allowed_names)
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return  # local IPC (process pools), not the network
        host = str(address[0]).lower() if isinstance(address, tuple) else str(address)
        if host in allowed_names or host in allowed_ips:
            return
        allowed = ", ".join(sorted(allowed_names)) or "none"
        raise PermissionError(
            f"network access to {host!r} refused during an attack (the controlled environment "
            f"allows only the endpoint under test: {allowed})"
        )

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        original_connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return original_connect_ex(sock, address)

    with _LOCK:
        socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        with _LOCK:
            socket.socket.connect = original_connect  # type: ignore[method-assign]
            socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]


def _addresses(names: set[str]) -> set[str]:
    """Every IP address the allowed names resolve to (resolved before the guard is on)."""
    out: set[str] = set()
    for name in names:
        out.add(name)
        try:
            for info in socket.getaddrinfo(name, None):
                out.add(str(info[4][0]).lower())
        except OSError:
            continue  # unresolvable now: the connection will fail on its own
    return out
