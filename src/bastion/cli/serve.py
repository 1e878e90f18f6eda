"""``bastion serve``: serve a verified release over the Open Inference Protocol v2."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    max_body_mb: Annotated[
        float, typer.Option(help="Largest request body, MiB (413 above it).")
    ] = 16.0,
    rate: Annotated[
        float, typer.Option(help="Requests per second per client address (before login).")
    ] = 50.0,
    token_rate: Annotated[
        float, typer.Option(help="Requests per second per authenticated identity.")
    ] = 20.0,
    burst: Annotated[int, typer.Option(help="Burst size of both rate limits.")] = 40,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(help="CIDR of a reverse proxy whose X-Forwarded-For is believed."),
    ] = None,
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
    from bastion.gateway.guards.rate_limit import limiter_from_env
    from bastion.gateway.guards.schema import InputSchema
    from bastion.monitoring.live import LiveMonitor

    # drift of recent traffic against the release's signed reference profile (counts only)
    monitors: dict[str, LiveMonitor | None] = {name: _monitor_for(served.report)}

    def on_predict(model_name: str, _model: object, X: Any, labels: Any, request_id: str) -> None:
        monitor = monitors.get(model_name)
        if monitor is not None:
            monitor.observe(X, labels, request_id)

    def on_feedback(model_name: str, request_id: str, labels: list[Any]) -> int:
        monitor = monitors.get(model_name)
        if monitor is None:
            from bastion.exceptions import DataError

            raise DataError(f"model {model_name!r} is served without monitoring (no profile)")
        return monitor.feedback(request_id, labels)

    def snapshot(model_name: str) -> dict[str, Any]:
        monitor = monitors.get(model_name)
        return {"monitoring": False} if monitor is None else monitor.snapshot().to_dict()

    # in-process buckets, or shared through Redis when BASTION_REDIS_URL is set
    app = create_oip_app(
        {name: served.model},
        server_name="bastion",
        authorizer=authorizer,
        max_body_bytes=int(max_body_mb * (1 << 20)),
        address_limiter=limiter_from_env(rate, burst),
        token_limiter=limiter_from_env(token_rate, burst),
        trusted_proxies=tuple(trusted_proxy or ()),
        input_schema=InputSchema.from_report(served.report),
        on_predict=on_predict,
        on_feedback=on_feedback,
        monitor_snapshot=snapshot,
    )
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

        def swap(release: Any) -> None:
            monitors[name] = _monitor_for(release.report)
            app.state.models[name] = release.model

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


def _monitor_for(report: Any) -> Any:
    """A live monitor for a release, or None (with a warning) when its report carries no
    feature list or profile (releases made before reports carried them)."""
    import logging

    from bastion.exceptions import DataError
    from bastion.monitoring.live import LiveMonitor

    try:
        return LiveMonitor(report)
    except DataError as err:
        logging.getLogger(__name__).warning("serving without drift monitoring: %s", err)
        return None
