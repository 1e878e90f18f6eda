"""The controlled environment: during an attack no host but the endpoint under test."""

from __future__ import annotations

import socket

import pytest

from bastion.attacks.network import host_of, only_endpoints


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
            pytest.raises(PermissionError, match=r"'127\.0\.0\.1' refused during an attack"),
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
