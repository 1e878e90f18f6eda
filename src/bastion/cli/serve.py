"""``bastion serve``: serve a verified release over the Open Inference Protocol v2."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer

from bastion.cli.registry import ConfigOpt, KeyringOpt, TokenOpt, TrustedOpt, _pinned, open_registry
from bastion.exceptions import BastionError

if TYPE_CHECKING:
    from bastion.config import LogInputsSection

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
    ood_profile: Annotated[
        str | None,
        typer.Option(
            help=(
                "The reference profile of the release's gate report the OOD detector compares "
                "with (default: 'train', else the first dataset's). A release without it is "
                "refused: at startup (naming the profiles it holds) and when the alias moves."
            )
        ),
    ] = None,
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
    log_inputs: Annotated[
        Path | None,
        typer.Option(
            help=(
                "Opt in to the prediction log: append every answered request (UTC time, "
                "model, release, request id, a hash of the client identity, input rows as "
                "{feature: value}, predicted labels) as JSON lines to files in this folder, "
                "mode 0600, rotated by size (overrides monitoring.log_inputs.path). Off by "
                "default: no raw input is stored."
            )
        ),
    ] = None,
    log_max_mb: Annotated[
        float | None,
        typer.Option(
            help="Prediction log: size of a file before rotation, MiB (default 64).", min=0.001
        ),
    ] = None,
    log_max_files: Annotated[
        int | None,
        typer.Option(
            help="Prediction log: files kept; the oldest are deleted (default 16).", min=1
        ),
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
    log_settings = _log_settings(config, log_inputs, log_max_mb, log_max_files)
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
    if ood_profile is not None and ood_mode == "off":
        from bastion.exceptions import ConfigError

        raise ConfigError("--ood-profile needs --ood flag or block; received --ood off")
    if extraction not in ("alert", "throttle", "block", "off"):
        from bastion.exceptions import ConfigError

        raise ConfigError(
            f"--extraction must be alert, throttle, block or off; received {extraction!r}"
        )
    prediction_log = None  # opt-in; the folder is created (or refused) before serving
    if log_settings is not None:
        from bastion.monitoring.prediction_log import PredictionLogWriter

        prediction_log = PredictionLogWriter(
            log_settings.path,
            max_file_bytes=max(1, int(log_settings.max_file_mb * (1 << 20))),
            max_files=log_settings.max_files,
        )
    options = WatchOptions(
        ood_mode=ood_mode,
        ood_profile=ood_profile,
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
    service = GatewayService(
        metrics,
        alerter,
        options,
        prediction_log=prediction_log,
        throttle=throttle,
    )
    try:
        service.serve(name, served.ref, served.report)
    except BastionError as err:  # --ood-profile names a profile the release lacks
        alerter.close()
        audit_writer.close()
        if prediction_log is not None:
            prediction_log.close()
        registry.audit.append(
            registry.identity.name, "serve.refused", f"model:{served.ref}", {"reason": str(err)}
        )
        raise
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
    from bastion.gateway.admin import add_admin_routes

    # role serve.admin: active and recent alerts, and the registry's audit trail
    add_admin_routes(app, authorize=authorizer, alerter=alerter, audit_log=registry.audit)
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
            "prediction_log": str(log_settings.path) if log_settings is not None else None,
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
    if log_settings is not None:
        typer.echo(f"prediction log: every request's inputs are stored in {log_settings.path}")
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


def _log_settings(
    config: Path | None, path: Path | None, max_mb: float | None, max_files: int | None
) -> LogInputsSection | None:
    """The prediction log's settings: the flags over the policy's ``monitoring.log_inputs``;
    ``None`` (no log) unless one of them names a folder."""
    from bastion.config import LogInputsSection, load_policy

    section = None
    if config is not None:
        policy = load_policy(config)
        section = policy.spec.monitoring.log_inputs
        if section is not None:
            section = section.model_copy(update={"path": policy.resolve(section.path)})
    if path is None and section is None:
        if max_mb is not None or max_files is not None:
            from bastion.exceptions import ConfigError

            raise ConfigError(
                "--log-max-mb and --log-max-files need a prediction log: pass --log-inputs DIR "
                "or set monitoring.log_inputs.path in the policy"
            )
        return None
    base = section or LogInputsSection(path=path or Path())
    return LogInputsSection(
        path=path or base.path,
        max_file_mb=max_mb if max_mb is not None else base.max_file_mb,
        max_files=max_files if max_files is not None else base.max_files,
    )
