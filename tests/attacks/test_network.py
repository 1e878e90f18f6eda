"""The controlled environment: during an attack no host but the endpoint under test."""

from __future__ import annotations

import socket

import pytest

from bastion.attacks.network import host_of, only_endpoints, proxy_for


def _server() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_only_the_named_endpoint_is_reachable() -> None:
    server = _server()
    port = server.getsockname()[1]
    try:
        with only_endpoints([f"http://127.0.0.1:{port}"]):
            ok = socket.create_connection(("127.0.0.1", port), timeout=2)
            ok.close()
        with (
            only_endpoints(["https://models.invalid"]),
            pytest.raises(PermissionError, match=r"'127\.0\.0\.1' port \d+ refused during an"),
        ):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        # outside the block the guard is gone
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        server.close()


def test_local_ipc_is_not_the_network() -> None:
    left, right = socket.socketpair()  # AF_UNIX, as process pools use
    with only_endpoints([]):
        left.sendall(b"x")
        assert right.recv(1) == b"x"
    left.close()
    right.close()


def test_host_of() -> None:
    assert host_of("https://User:pw@Models.Example:8443/v2") == "models.example"
    assert host_of("not a url") == ""


def test_another_port_on_the_endpoints_host_is_refused() -> None:
    """The rule compared hosts only: a model or training function could reach Redis or
    PostgreSQL beside the endpoint."""
    endpoint, other = _server(), _server()
    port, other_port = endpoint.getsockname()[1], other.getsockname()[1]
    try:
        with only_endpoints([f"http://127.0.0.1:{port}"]):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            with pytest.raises(PermissionError, match=rf"port {other_port} refused"):
                socket.create_connection(("127.0.0.1", other_port), timeout=2)
    finally:
        endpoint.close()
        other.close()


def test_datagrams_and_name_lookups_are_guarded_too() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with only_endpoints(["https://models.invalid"]):
            with pytest.raises(PermissionError, match="refused during an attack"):
                sender.sendto(b"secret", receiver.getsockname())
            with pytest.raises(PermissionError, match=r"a lookup of 'example\.org' refused"):
                socket.getaddrinfo("example.org", 443)
        sender.sendto(b"ok", receiver.getsockname())  # outside: passes
        assert receiver.recv(8) == b"ok"
    finally:
        receiver.close()
        sender.close()


def test_overlapping_blocks_in_threads_leave_no_guard_behind() -> None:
    """Each block saved and restored the socket methods it found: overlapping blocks left
    the second unguarded, then a guard installed for good."""
    import threading

    server = _server()
    port = server.getsockname()[1]
    entered, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def other_attack() -> None:
        with only_endpoints(["https://b.invalid"]):
            entered.set()
            release.wait(5)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                seen.append("allowed")
            except PermissionError:
                seen.append("refused")

    try:
        worker = threading.Thread(target=other_attack)
        with only_endpoints(["https://a.invalid"]):
            worker.start()
            entered.wait(5)
        release.set()  # the first block closed; the second is still open
        worker.join(5)
        assert seen == ["refused"]
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # none left
    finally:
        server.close()


def test_the_proxy_that_reaches_the_endpoint_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("HTTP_PROXY", "127.0.0.1:3129")  # no scheme, as httpx accepts it
    assert proxy_for("https://models.example/v2") == "http://proxy.corp:3128"
    assert proxy_for("http://models.example/v2") == "http://127.0.0.1:3129"
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("HTTP_PROXY")
    assert proxy_for("https://models.example/v2") is None


def test_threads_running_before_the_attack_pass_through() -> None:
    """A database pool or a server in another thread: name lookups there were refused while
    an attack ran (psycopg resolves 'localhost' in Python)."""
    import threading

    go, done = threading.Event(), threading.Event()
    seen: list[str] = []

    def service() -> None:
        go.wait(5)
        try:
            socket.getaddrinfo("localhost", 5432)
            seen.append("resolved")
        except PermissionError:
            seen.append("refused")
        done.set()

    worker = threading.Thread(target=service)
    worker.start()  # running before the attack opens its block
    with only_endpoints(["https://models.invalid"]):
        go.set()
        done.wait(5)
        with pytest.raises(PermissionError, match="a lookup of 'localhost'"):
            socket.getaddrinfo("localhost", 5432)  # the attacking thread is guarded
        with pytest.raises(PermissionError, match=r"a lookup of 'example\.org'"):
            socket.gethostbyname("example.org")
    worker.join(5)
    assert seen == ["resolved"]


def test_an_internationalised_endpoint_name_is_looked_up_as_a_resolver_writes_it() -> None:
    # not refused by the rule, only unknown to the resolver
    with only_endpoints(["https://bücher.invalid"]), pytest.raises(socket.gaierror):
        socket.getaddrinfo("xn--bcher-kva.invalid", 443)


def test_the_proxys_port_opens_the_proxy_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosts and ports were allowed in two separate sets: with a proxy on another host, the
    proxy's port was open on the endpoint's host too (a review reached a third service on
    127.0.0.1 through it). Each host is now allowed on its own port only."""
    endpoint, proxy, third = _server(), _server(), _server()
    port, proxy_port = endpoint.getsockname()[1], proxy.getsockname()[1]
    third_port = third.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://localhost:{proxy_port}")
    try:
        with only_endpoints([f"http://127.0.0.2:{port}"]):
            socket.create_connection(("localhost", proxy_port), timeout=2).close()
            with pytest.raises(PermissionError, match=rf"port {proxy_port} refused"):
                socket.create_connection(("127.0.0.2", proxy_port), timeout=2)
            with pytest.raises(PermissionError, match=rf"port {third_port} refused"):
                socket.create_connection(("127.0.0.2", third_port), timeout=2)
    finally:
        for server in (endpoint, proxy, third):
            server.close()
