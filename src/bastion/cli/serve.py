"""``bastion serve``: serve a verified release over the Open Inference Protocol v2."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, cast

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
    ood: Annotated[
        str,
        typer.Option(
            help="Out-of-distribution inputs: flag (alert on bursts), block (422) or off."
        ),
    ] = "flag",
    extraction: Annotated[
        str,
        typer.Option(
            help="Clients flagged for extraction-style querying: alert only, throttle (to "
            "--extraction-rate, 429), block (403) or off (no detector)."
        ),
    ] = "alert",
    extraction_rate: Annotated[
        float, typer.Option(help="Requests per second a flagged client keeps in throttle mode.")
    ] = 0.2,
    webhook: Annotated[
        list[str] | None,
        typer.Option(help="Alert webhook URL (repeatable); signed with $BASTION_WEBHOOK_SECRET."),
    ] = None,
    label_only: Annotated[
        bool, typer.Option(help="Answer the top label only (no probabilities).")
    ] = False,
    round_probabilities: Annotated[
        int | None, typer.Option(help="Round probabilities to this many decimals.")
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
    import os

    from bastion.gateway.guards.rate_limit import limiter_from_env
    from bastion.gateway.metrics import GatewayMetrics
    from bastion.gateway.service import GatewayService, WatchOptions
    from bastion.governance.audit import AuditWriter
    from bastion.monitoring.alerts import Alerter

    if ood not in ("flag", "block", "off"):
        from bastion.exceptions import ConfigError

        raise ConfigError(f"--ood must be flag, block or off; received {ood!r}")
    ood_mode = cast(Literal["flag", "block", "off"], ood)
    if extraction not in ("alert", "throttle", "block", "off"):
        from bastion.exceptions import ConfigError

        raise ConfigError(
            f"--extraction must be alert, throttle, block or off; received {extraction!r}"
        )
    options = WatchOptions(
        ood_mode=ood_mode,
        extraction=cast(Literal["alert", "throttle", "block", "off"], extraction),
        extraction_rate=extraction_rate,
    )
    # the extraction throttle's buckets live beside the rate limits' (Redis when
    # BASTION_REDIS_URL is set, so replicas share them); its rate is its own
    throttle = (
        limiter_from_env(extraction_rate, options.extraction_burst, rate_env=None)
        if options.extraction == "throttle"
        else None
    )
    metrics = GatewayMetrics()
    # alerts: an audit event (group-committed), a signed webhook per URL, a log line
    audit_writer = AuditWriter(registry.audit)
    alerter = Alerter(
        audit=audit_writer.append,
        webhook_urls=webhook or [],
        secret=os.environ.get("BASTION_WEBHOOK_SECRET"),
        on_fire=metrics.alert,
    )
    service = GatewayService(metrics, alerter, options, throttle=throttle)
    service.serve(name, served.ref, served.report)
    # in-process buckets, or shared through Redis when BASTION_REDIS_URL is set
    app = create_oip_app(
        {name: served.model},
        server_name="bastion",
        authorizer=authorizer,
        max_body_bytes=int(max_body_mb * (1 << 20)),
        address_limiter=limiter_from_env(rate, burst),
        token_limiter=limiter_from_env(token_rate, burst),
        trusted_proxies=tuple(trusted_proxy or ()),
        input_schema=service.input_check(name),
        on_predict=service.on_predict,
        on_feedback=service.on_feedback,
        monitor_snapshot=service.snapshot,
        client_guard=service.admit,
        on_release=service.release,
        metrics=metrics,
        label_only=label_only,
        round_probabilities=round_probabilities,
    )
    from bastion.gateway.dashboard import add_dashboard, alerts_from

    add_dashboard(
        app,
        models=lambda: sorted(app.state.models),
        snapshot=service.snapshot,
        metrics_snapshot=metrics.snapshot,
        alerts=alerts_from(alerter),
        authorize=authorizer,
        psi_threshold=service.options.psi_threshold,
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
            service.serve(name, release.ref, release.report)
            app.state.models[name] = release.model

        watcher = AliasWatcher(registry, model, trusted, served, swap, interval_s=watch_s)
        watcher.start()
    service.start()
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
        service.stop()
        alerter.close()
        audit_writer.close()
