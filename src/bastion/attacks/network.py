"""The controlled environment's network rule: attacks reach no service but the endpoint named.

While an attack runs, :func:`only_endpoints` refuses every outgoing IP connection, datagram
and name lookup that is not for one of the given endpoints (the remote model under test, on
its own port, and the proxy that reaches it, if the environment names one). Local
inter-process sockets (``AF_UNIX``, used by process pools) are untouched. A refused call
raises :class:`PermissionError` naming the host and port, so an attack that tried to phone
home fails loudly instead of leaking data.

The rule patches ``socket.socket`` (``connect``, ``connect_ex``, ``sendto``, ``sendmsg``) and
``socket.getaddrinfo`` once, the first time it is used; outside any guarded block the patches
pass every call through. Blocks may overlap (threads running attacks side by side): a call
is allowed when any active block allows it, and leaving a block never disturbs another. It
guards Python code in this process: native extensions that open their own sockets, and
child processes, are not covered.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["host_of", "only_endpoints", "proxy_for"]

_LOCK = threading.Lock()
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _Allowed:
    """What one guarded block lets through: names, their addresses, and (address, port)."""

    names: frozenset[str]
    addresses: frozenset[str]
    ports: frozenset[int]


_ACTIVE: list[_Allowed] = []  # the blocks now open, in any thread
_ORIGINAL: dict[str, Any] = {}


def host_of(url: str) -> str:
    """The host name of an endpoint URL (``https://models.example:8443/v2`` -> the host)."""
    return (urlsplit(url).hostname or "").lower()


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``ALL_PROXY``; none
    when ``NO_PROXY`` bypasses the host), which an HTTP client such as httpx goes through."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


@contextmanager
def only_endpoints(urls: Iterable[str]) -> Iterator[None]:
    """Refuse network access to anything but the services of ``urls`` inside the block.

    Example::

        with only_endpoints(["https://models.example"]):
            result = Square().run(remote_model, X, y, eps=0.5)
    """
    urls = [u for u in urls if host_of(u)]
    urls += [p for p in (proxy_for(u) for u in urls) if p and host_of(p)]
    names = frozenset(host_of(u) for u in urls)
    ports = frozenset(_port_of(u) for u in urls)
    allowed = _Allowed(names, frozenset(_addresses(names)), ports)
    with _LOCK:
        _install()
        _ACTIVE.append(allowed)
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE.remove(allowed)


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)


def _refusal(what: str) -> PermissionError:
    names = sorted({n for block in list(_ACTIVE) for n in block.names})
    return PermissionError(
        f"network access to {what} refused during an attack (the controlled environment "
        f"allows only the endpoint under test: {', '.join(names) or 'none'})"
    )


def _check_address(sock: socket.socket, address: Any) -> None:
    if not _ACTIVE or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # no attack running, or local IPC (process pools)
    if not isinstance(address, tuple) or len(address) < 2:
        raise _refusal(repr(address))
    host, port = str(address[0]).lower(), address[1]
    for block in list(_ACTIVE):
        if (host in block.names or host in block.addresses) and port in block.ports:
            return
    raise _refusal(f"{host!r} port {port}")


def _check_name(host: Any) -> None:
    if not _ACTIVE or host is None:
        return
    name = (host.decode() if isinstance(host, bytes) else str(host)).lower()
    try:
        ipaddress.ip_address(name)
        return  # an address, not a name: no lookup leaves the machine (connect decides)
    except ValueError:
        pass
    for block in list(_ACTIVE):
        if name in block.names or name in block.addresses:
            return
    raise _refusal(f"a lookup of {name!r}")


def _install() -> None:
    """Patch the socket module once (under ``_LOCK``); every patch passes through while no
    block is open."""
    if _ORIGINAL:
        return
    sock = socket.socket
    _ORIGINAL.update(
        connect=sock.connect,
        connect_ex=sock.connect_ex,
        sendto=sock.sendto,
        sendmsg=sock.sendmsg,
        getaddrinfo=socket.getaddrinfo,
    )

    def connect(self: socket.socket, address: Any) -> None:
        _check_address(self, address)
        _ORIGINAL["connect"](self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check_address(self, address)
        result: int = _ORIGINAL["connect_ex"](self, address)
        return result

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        # sendto(data, address) or sendto(data, flags, address)
        _check_address(self, args[-1] if args else None)
        sent: int = _ORIGINAL["sendto"](self, data, *args)
        return sent

    def sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
        # sendmsg(buffers[, ancdata[, flags[, address]]]): connected sockets pass no address
        if len(args) >= 3 and args[2] is not None:
            _check_address(self, args[2])
        sent: int = _ORIGINAL["sendmsg"](self, buffers, *args)
        return sent

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        _check_name(host)
        return _ORIGINAL["getaddrinfo"](host, *args, **kwargs)

    sock.connect = connect  # type: ignore[method-assign,assignment]
    sock.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    sock.sendto = sendto  # type: ignore[method-assign,assignment]
    sock.sendmsg = sendmsg  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo


def _addresses(names: frozenset[str]) -> set[str]:
    """Every IP address the allowed names resolve to (resolved before the block opens)."""
    out: set[str] = set(names)
    lookup = _ORIGINAL.get("getaddrinfo", socket.getaddrinfo)
    for name in names:
        try:
            for info in lookup(name, None):
                out.add(str(info[4][0]).lower())
        except OSError:
            continue  # unresolvable now: the connection will fail on its own
    return out
