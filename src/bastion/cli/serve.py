"""``bastion serve``: serve a verified release over the Open Inference Protocol v2."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.registry import ConfigOpt, KeyringOpt, TokenOpt, TrustedOpt, _pinned, open_registry

__all__ = ["serve_command"]


def serve_command(
    model: Annotated[
        str, typer.Option("--model", "-m", help="The release to serve: NAME@ALIAS or NAME@VERSION.")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    config: ConfigOpt = None,
    keyring: KeyringOpt = None,
    trusted_key: TrustedOpt = None,
    watch_s: Annotated[
        float, typer.Option(help="Seconds between checks of the alias (0: do not watch).")
    ] = 10.0,
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous",
            help="Serve without authentication (local experiments only; never in production).",
        ),
    ] = False,
    token: TokenOpt = None,
) -> None:
    """Serve a registered release whose signature verifies against the pinned keys and whose
    signed gate report passed; refuse to start otherwise, saying which condition failed.

    When the alias moves to another release, that release is verified the same way before it
    replaces the one being served. Exit 1: a condition for serving failed; 2: usage error.
    """
    from bastion._optional import require
    from bastion.gateway.oip import create_oip_app
    from bastion.gateway.release import AliasWatcher, ServeRefusedError, load_release
    from bastion.governance.keys import default_keyring_path, load_trusted_keys

    if (tls_cert is None) != (tls_key is None):
        from bastion.exceptions import ConfigError

        raise ConfigError("--tls-cert and --tls-key go together")
    keyring, pems = _pinned(config, keyring, trusted_key)
    if keyring is None and not pems:
        keyring = default_keyring_path()
    trusted = load_trusted_keys(keyring=keyring, pem_files=pems)
    registry = open_registry(token)
    try:
        served = load_release(registry, model, trusted)
    except ServeRefusedError as err:
        registry.audit.append(
            registry.identity.name, "serve.refused", f"model:{model}", {"reason": str(err)}
        )
        typer.echo(f"not serving: {err}", err=True)
        raise typer.Exit(1) from err
    name = served.version.name
    authorizer = None
    if not allow_anonymous:
        if registry.access.single_user_mode():
            from bastion.exceptions import ConfigError

            raise ConfigError(
                "the registry has no users, so no client could authenticate: create one "
                "(bastion users add client --role viewer) and call with its token, or pass "
                "--allow-anonymous for a local experiment"
            )
        from bastion.gateway.guards.auth import TokenAuthorizer

        authorizer = TokenAuthorizer(registry.access)
    app = create_oip_app({name: served.model}, server_name="bastion", authorizer=authorizer)
    registry.audit.append(
        registry.identity.name,
        "serve.start",
        f"model:{served.ref}",
        {
            "alias": model,
            "key_id": served.key_id,
            "host": host,
            "port": port,
            "authenticated": authorizer is not None,
        },
    )
    watcher = None
    if watch_s > 0 and "@" in model and not model.split("@", 1)[1].isdigit():

        def swap(release: object) -> None:
            app.state.models[name] = release.model  # type: ignore[attr-defined]

        watcher = AliasWatcher(registry, model, trusted, served, swap, interval_s=watch_s)
        watcher.start()
    typer.echo(f"serving {served.ref} (signed by key {served.key_id[:16]}) on {host}:{port}")
    uvicorn = require("uvicorn", "bastion serve")
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            log_level="warning",
        )
    finally:
        if watcher is not None:
            watcher.stop()
