"""The controlled environment's network rule: attacks reach no service but the endpoint named.

While an attack runs, :func:`only_endpoints` refuses every outgoing IP connection, datagram
and name lookup that is not for one of the given endpoints (the remote model under test, on
its own port, and the proxy that reaches it, if the environment names one). Local
inter-process sockets (``AF_UNIX``, used by process pools) are untouched. A refused call
raises :class:`PermissionError` naming the host and port, so an attack that tried to phone
home fails loudly instead of leaking data.

The rule patches ``socket.socket`` (``connect``, ``connect_ex``, ``sendto``, ``sendmsg``) and
the name lookups (``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``) once, the first time
it is used; outside any guarded block the patches pass every call through. A block guards
the thread that opened it and the threads started while it is open (the attack's own
workers, or a model's); threads that were running before (a server, a database pool) pass
through. Blocks may overlap: a call is allowed when one of the blocks that guard its thread
allows it, and leaving a block never disturbs another. It guards Python code in this
process: native extensions that open their own sockets, and child processes, are not
covered.
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

__all__ = ["guarded_endpoints", "host_of", "only_endpoints", "proxy_for"]

_LOCK = threading.Lock()
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _Allowed:
    """What one guarded block lets through (names, their addresses, ports), and the threads it
    leaves alone: those running before it opened, other than its own."""

    names: frozenset[str]
    addresses: frozenset[str]
    # (name or address, port) of each endpoint: a host is allowed on its own port only (with
    # hosts and ports in two sets, an allowed proxy's port opened it on the endpoint's host)
    pairs: frozenset[tuple[str, int]]
    outside: frozenset[int]
    urls: tuple[str, ...] = ()


_ACTIVE: list[_Allowed] = []  # the blocks now open, in any thread
_ORIGINAL: dict[str, Any] = {}


def host_of(url: str) -> str:
    """The host name of an endpoint URL (``https://models.example:8443/v2`` -> the host)."""
    return (urlsplit(url).hostname or "").lower()


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url``'s scheme (``HTTPS_PROXY``, ``ALL_PROXY``),
    which an HTTP client such as httpx may go through. ``NO_PROXY`` is not applied: clients
    read it differently, and allowing a proxy that goes unused costs nothing."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(urlsplit(url).scheme) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"  # '127.0.0.1:3128', as httpx and curl accept it
    return proxy or None


@contextmanager
def only_endpoints(urls: Iterable[str]) -> Iterator[None]:
    """Refuse network access to anything but the services of ``urls`` inside the block.

    Example::

        with only_endpoints(["https://models.example"]):
            result = Square().run(remote_model, X, y, eps=0.5)
    """
    urls = [u for u in urls if host_of(u)]
    urls += [p for p in (proxy_for(u) for u in urls) if p and host_of(p)]
    names: set[str] = set()
    addresses: set[str] = set()
    pairs: set[tuple[str, int]] = set()
    for url in urls:
        forms = frozenset(_name_forms([host_of(url)]))
        resolved = _addresses(forms)
        names |= forms
        addresses |= resolved
        pairs |= {(host, _port_of(url)) for host in forms | resolved}
    running = {t.ident for t in threading.enumerate() if t.ident is not None}
    outside = frozenset(running - {threading.get_ident()})
    allowed = _Allowed(
        frozenset(names), frozenset(addresses), frozenset(pairs), outside, tuple(urls)
    )
    with _LOCK:
        _install()
        _ACTIVE.append(allowed)
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE.remove(allowed)


def guarded_endpoints() -> tuple[str, ...] | None:
    """The endpoints the open blocks guarding this thread allow (None: no block guards it),
    for a worker process to open the same rule: a process pool's workers are new
    interpreters, outside every block (a review saw shadow models trained by user code in
    workers reach another port while the parent refused it)."""
    blocks = _guarding() if _ACTIVE else []
    if not blocks:
        return None
    return tuple(dict.fromkeys(u for block in blocks for u in block.urls))


def _name_forms(names: Iterable[str]) -> set[str]:
    """Each name as written and as a resolver sees it (IDNA: ``bücher.example`` is looked up
    as ``xn--bcher-kva.example``)."""
    out: set[str] = set()
    for name in names:
        out.add(name)
        try:
            out.add(name.encode("idna").decode("ascii").lower())
        except UnicodeError:
            continue
    return out


def _guarding() -> list[_Allowed]:
    """The open blocks that guard the calling thread."""
    me = threading.get_ident()
    return [block for block in list(_ACTIVE) if me not in block.outside]


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
    blocks = _guarding()
    if not blocks:
        return  # a thread the open blocks leave alone
    if not isinstance(address, tuple) or len(address) < 2:
        raise _refusal(repr(address))
    host, port = str(address[0]).lower(), address[1]
    for block in blocks:
        if (host, port) in block.pairs:
            return
    raise _refusal(f"{host!r} port {port}")


def _check_name(host: Any) -> None:
    if not _ACTIVE or host is None:
        return
    blocks = _guarding()
    if not blocks:
        return
    name = (host.decode() if isinstance(host, bytes) else str(host)).lower()
    try:
        ipaddress.ip_address(name)
        return  # an address, not a name: no lookup leaves the machine (connect decides)
    except ValueError:
        pass
    for block in blocks:
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
        gethostbyname=socket.gethostbyname,
        gethostbyname_ex=socket.gethostbyname_ex,
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

    def gethostbyname(host: str) -> str:
        _check_name(host)
        found: str = _ORIGINAL["gethostbyname"](host)
        return found

    def gethostbyname_ex(host: str) -> Any:
        _check_name(host)
        return _ORIGINAL["gethostbyname_ex"](host)

    sock.connect = connect  # type: ignore[method-assign,assignment]
    sock.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    sock.sendto = sendto  # type: ignore[method-assign,assignment]
    sock.sendmsg = sendmsg  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex


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
