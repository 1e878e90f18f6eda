"""``bastion registry``, ``bastion users`` and ``bastion audit``: thin commands over
:mod:`bastion.governance`.

Where: ``BASTION_HOME`` (default ``./.bastion``) and ``BASTION_DATABASE_URL`` (default SQLite
inside it). Who: ``--token`` or ``BASTION_TOKEN`` (none needed while the registry has no users:
single-user mode, acting as the local admin).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.exceptions import ConfigError

if TYPE_CHECKING:
    from bastion.governance.registry import ModelVersion, Registry

__all__ = ["audit_app", "open_registry", "registry_app", "users_app"]

registry_app = typer.Typer(
    help=(
        "The model registry: content-addressed versions, aliases (@champion, @staging, "
        "@production), four-eyes promotion, signature verification. Location: $BASTION_HOME "
        "and $BASTION_DATABASE_URL; identity: --token or $BASTION_TOKEN."
    ),
    no_args_is_help=True,
)
users_app = typer.Typer(
    help=(
        "Users, roles (viewer, data-scientist, approver, admin) and API tokens. Tokens are "
        "shown once and stored hashed. The first user ends single-user mode."
    ),
    no_args_is_help=True,
)
audit_app = typer.Typer(
    help="The audit trail: a hash chain with signed checkpoints in the registry database.",
    no_args_is_help=True,
)


class Fmt(StrEnum):
    text = "text"
    json = "json"


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="BASTION_TOKEN", help="API token (or $BASTION_TOKEN).", show_envvar=False
    ),
]
FormatOpt = Annotated[Fmt, typer.Option("--format", "-f", help="text or json.")]


def open_registry(token: str | None) -> Registry:
    from bastion.governance.registry import Registry

    return Registry.open(token=token)


def _emit(data: Any, fmt: Fmt, text: str) -> None:
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    else:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))


def _describe(mv: ModelVersion) -> str:
    aliases = " ".join(f"@{a}" for a in mv.aliases) or "-"
    gate = {True: "passed", False: "FAILED", None: "none"}[mv.gate_passed]
    lines = [
        f"{mv.ref}  aliases: {aliases}",
        f"  registered {mv.created_at} by {mv.created_by}; code {mv.code_version or '-'}",
        f"  manifest sha256 {mv.manifest_sha256}",
        f"  gate report {mv.report_sha256 or '-'} ({gate})",
        f"  signature {mv.bundle_sha256 or 'none'}"
        + (f" key {mv.key_id[:16]}" if mv.key_id else ""),
    ]
    lines += [f"  file {p}  {s[:16]}" for p, s in mv.files]
    lines += [f"  dataset {n}  {s[:16]}" for n, s in sorted(mv.datasets.items())]
    return "\n".join(lines)


# -- registry ------------------------------------------------------------------------------------
@registry_app.command("list")
def registry_list(token: TokenOpt = None, output_format: FormatOpt = Fmt.text) -> None:
    """Every model with its latest version and aliases."""
    models = open_registry(token).models()
    text = "\n".join(
        f"{m['name']}  latest {m['latest']}  "
        + " ".join(f"@{a}={v}" for a, v in sorted(m["aliases"].items()))
        for m in models
    )
    _emit(models, output_format, text or "(no models)")


@registry_app.command("show")
def registry_show(
    ref: Annotated[str, typer.Argument(help="name@version, name@alias or name (latest).")],
    token: TokenOpt = None,
    output_format: FormatOpt = Fmt.text,
) -> None:
    """One version: files, digests, gate verdict, signature, datasets, aliases."""
    mv = open_registry(token).get(ref)
    _emit(mv.to_dict(), output_format, _describe(mv))


@registry_app.command("register")
def registry_register(
    name: Annotated[str, typer.Argument(help="Model name.")],
    folder: Annotated[Path, typer.Argument(help="Release folder (model files, report.json...).")],
    code_version: Annotated[
        str | None, typer.Option(help="Code version (default: git rev-parse HEAD).")
    ] = None,
    token: TokenOpt = None,
    output_format: FormatOpt = Fmt.text,
) -> None:
    """Copy a folder into the registry as the next version of NAME (no checks: prefer
    'bastion release', which scans, gates and signs first)."""
    mv = open_registry(token).register(name, folder, code_version=code_version)
    _emit(mv.to_dict(), output_format, f"registered {mv.ref}")


@registry_app.command("alias")
def registry_alias(
    ref: Annotated[str, typer.Argument(help="The version, e.g. cancer@3.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. staging or champion.")],
    token: TokenOpt = None,
) -> None:
    """Point an alias at a version (@production goes through the promotion checks)."""
    mv = open_registry(token).set_alias(ref, alias)
    typer.echo(f"{mv.name}@{alias} -> {mv.ref}")


@registry_app.command("approve")
def registry_approve(
    ref: Annotated[str, typer.Argument(help="The version to approve for production.")],
    comment: Annotated[str, typer.Option(help="Why it may ship.")] = "",
    token: TokenOpt = None,
) -> None:
    """Approve a version for production (an approver other than whoever registered it)."""
    reg = open_registry(token)
    reg.approve(ref, comment)
    typer.echo(f"{ref} approved by {reg.identity.name}")


@registry_app.command("promote")
def registry_promote(
    ref: Annotated[str, typer.Argument(help="The version to promote.")],
    alias: Annotated[str, typer.Option(help="Protected alias to move.")] = "production",
    token: TokenOpt = None,
) -> None:
    """Move @production after checking: approved by another user, gate passed, signed."""
    mv = open_registry(token).promote(ref, alias)
    typer.echo(f"{mv.name}@{alias} -> {mv.ref}")


@registry_app.command("export")
def registry_export(
    ref: Annotated[str, typer.Argument(help="The version.")],
    dest: Annotated[Path, typer.Argument(help="An empty or new folder.")],
    token: TokenOpt = None,
) -> None:
    """Write a version's files (each checked against its digest) into DEST."""
    out = open_registry(token).export(ref, dest)
    typer.echo(f"wrote {out}")


@registry_app.command("add-data")
def registry_add_data(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet file.")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: file stem).")] = None,
    token: TokenOpt = None,
) -> None:
    """Store a dataset in the registry (encrypted at rest with $BASTION_STORE_KEK) and record
    it in the lineage graph; prints its sha256."""
    typer.echo(open_registry(token).add_dataset(file, name))


@registry_app.command("get-data")
def registry_get_data(
    sha256: Annotated[str, typer.Argument(help="The dataset's sha256.")],
    dest: Annotated[Path, typer.Argument(help="Where to write it.")],
    token: TokenOpt = None,
) -> None:
    """Write a stored dataset (decrypted and verified) to DEST."""
    typer.echo(f"wrote {open_registry(token).get_dataset(sha256, dest)}")


# -- users ---------------------------------------------------------------------------------------
@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="viewer, data-scientist, approver or admin.")],
    token: TokenOpt = None,
) -> None:
    """Create a user and print their first API token (shown once)."""
    reg = open_registry(token)
    new = reg.access.add_user(name, role, by=reg.identity)
    typer.echo(f"user {name} ({role}) created; API token (shown once, store it now):")
    typer.echo(new)


@users_app.command("list")
def users_list(token: TokenOpt = None, output_format: FormatOpt = Fmt.text) -> None:
    """Every user, role and status."""
    reg = open_registry(token)
    rows = reg.access.users(by=reg.identity)
    text = "\n".join(
        f"{r['name']}  {r['role']}" + ("  (disabled)" if r["disabled"] else "") for r in rows
    )
    _emit(rows, output_format, text or "(no users: single-user mode)")


@users_app.command("token")
def users_token(
    name: Annotated[str, typer.Argument(help="User name.")],
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    expires: Annotated[
        str | None, typer.Option(help="Expiry, UTC ISO time (e.g. 2027-01-01T00:00:00Z).")
    ] = None,
    token: TokenOpt = None,
) -> None:
    """Create another token (admins for anyone, users for themselves); shown once."""
    reg = open_registry(token)
    expires_at = _iso(expires) if expires else None
    typer.echo(reg.access.create_token(name, by=reg.identity, label=label, expires_at=expires_at))


@users_app.command("revoke")
def users_revoke(
    name: Annotated[str, typer.Argument(help="User whose tokens are revoked.")],
    token: TokenOpt = None,
) -> None:
    """Revoke every token of a user."""
    reg = open_registry(token)
    n = reg.access.revoke_tokens(name, by=reg.identity)
    typer.echo(f"revoked {n} token(s) of {name}")


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="User to lock out.")],
    enable: Annotated[bool, typer.Option("--enable", help="Re-enable instead.")] = False,
    token: TokenOpt = None,
) -> None:
    """Disable (or --enable) a user: their tokens stop working."""
    reg = open_registry(token)
    reg.access.set_disabled(name, not enable, by=reg.identity)
    typer.echo(f"{name} {'enabled' if enable else 'disabled'}")


def _iso(value: str) -> str:
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise ConfigError(f"--expires: not an ISO time: {value!r}") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- audit ---------------------------------------------------------------------------------------
@audit_app.command("export")
def audit_export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSON lines file.")] = None,
    since: Annotated[int, typer.Option(help="Only events after this sequence number.")] = 0,
    token: TokenOpt = None,
) -> None:
    """Write the audit trail as JSON lines (one event per line)."""
    reg = open_registry(token)
    reg.access.require(reg.identity, "audit.read")
    if out is None:
        reg.audit.export_jsonl(sys.stdout, since)
        return
    with open(out, "w", encoding="utf-8") as fh:
        n = reg.audit.export_jsonl(fh, since)
    typer.echo(f"wrote {n} event(s) to {out}", err=True)


KeyringOpt = Annotated[
    Path | None,
    typer.Option(
        "--keyring", help="Trusted keyring file (default $BASTION_KEYRING, else the key store's)."
    ),
]
TrustedOpt = Annotated[
    list[Path] | None,
    typer.Option("--trusted-key", help="A trusted public key PEM file (repeatable)."),
]


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Policy file whose signing.keyring / signing.trusted_keys apply."
    ),
]


def _pinned(
    config: Path | None, keyring: Path | None, trusted: list[Path] | None
) -> tuple[Path | None, list[Path]]:
    """Keys pinned by the flags, else by the policy's ``signing`` section."""
    pems = list(trusted or [])
    if config is not None:
        from bastion.config import load_policy

        policy = load_policy(config)
        section = policy.spec.signing
        if keyring is None and section.keyring is not None:
            keyring = policy.resolve(section.keyring)
        pems += [policy.resolve(p) for p in section.trusted_keys]
    return keyring, pems


@registry_app.command("verify")
def registry_verify(
    ref: Annotated[str, typer.Argument(help="The version to verify.")],
    keyring: KeyringOpt = None,
    trusted_key: TrustedOpt = None,
    config: ConfigOpt = None,
    token: TokenOpt = None,
) -> None:
    """Re-hash every file of a version and check its signature against trusted keys pinned
    outside the registry database (a keyring file, PEM files, or the policy's signing
    section). Exit 1 when it fails."""
    import tempfile

    from bastion.cli.keys import render_verification, verify_release

    keyring, trusted_key = _pinned(config, keyring, trusted_key)
    reg = open_registry(token)
    reg.access.require(reg.identity, "registry.verify")
    with tempfile.TemporaryDirectory(prefix="bastion-verify-") as tmp:
        folder = reg.export(ref, Path(tmp) / "release")
        result = verify_release(folder, keyring=keyring, pem_files=trusted_key)
    sys.stdout.write(render_verification(result).replace(str(folder), ref))
    reg.audit.append(
        reg.identity.name,
        "model.verify",
        f"model:{reg.get(ref).ref}",
        {"ok": result.ok, "key_id": result.key_id, "problems": list(result.problems)[:10]},
    )
    raise typer.Exit(0 if result.ok else 1)


@registry_app.command("sign")
def registry_sign(
    folder: Annotated[Path, typer.Argument(help="Release folder to sign (writes model.sig).")],
    key: Annotated[
        str | None, typer.Option(help="Key id (or prefix) in the key store; default: active.")
    ] = None,
    token: TokenOpt = None,
) -> None:
    """Sign a release folder as an OpenSSF model-signing bundle (ECDSA P-256)."""
    from bastion.cli.keys import sign_release

    reg = open_registry(token)
    reg.access.require(reg.identity, "registry.release")
    result = sign_release(folder, key)
    reg.audit.append(
        reg.identity.name,
        "release.sign",
        f"folder:{folder.name}",
        {"key_id": result.key_id, "files": len(result.files)},
    )
    typer.echo(f"signed {folder} with key {result.key_id[:16]} -> {result.signature_path}")


@audit_app.command("verify")
def audit_verify(
    keyring: KeyringOpt = None,
    trusted_key: TrustedOpt = None,
    require_checkpoint: Annotated[
        bool, typer.Option(help="Fail unless a checkpoint verifies with a trusted key.")
    ] = True,
    token: TokenOpt = None,
) -> None:
    """Re-hash the whole chain and check every signed checkpoint; names the first broken link
    or checkpoint. Exit 1 when it does not hold."""
    from bastion.governance.audit import verify_chain

    reg = open_registry(token)
    reg.access.require(reg.identity, "audit.read")
    keys = _trusted(keyring, trusted_key)
    result = verify_chain(reg.engine, keys, require_checkpoint=require_checkpoint)
    if result.ok:
        typer.echo(
            f"audit chain holds: {result.events} events, {result.checkpoints} signed "
            f"checkpoint(s); {result.unprotected_tail} event(s) after the last checkpoint"
        )
        raise typer.Exit(0)
    typer.echo(f"audit chain BROKEN: {result.problem}")
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(
    key: Annotated[
        str | None, typer.Option(help="Key id (or prefix) in the key store; default: active.")
    ] = None,
    token: TokenOpt = None,
) -> None:
    """Sign the chain's head with a key held outside the database."""
    from bastion.governance.keys import KeyProtection, KeyStore

    reg = open_registry(token)
    reg.access.require(reg.identity, "audit.checkpoint")
    signer = KeyStore.at().load_signing_key(key, KeyProtection.from_env())
    seq, head = reg.audit.checkpoint(signer.sign, signer.key_id)
    typer.echo(f"checkpoint at event {seq} ({head[:16]}) signed by key {signer.key_id[:16]}")


def _trusted(keyring: Path | None, pems: list[Path] | None) -> Any:
    """A ``(key_id, message, signature) -> bool`` check over keys pinned outside the
    database: the given keyring / PEM files, else the default keyring."""
    from bastion.governance.keys import default_keyring_path, load_trusted_keys

    if keyring is None and not pems:
        keyring = default_keyring_path()
    trusted = load_trusted_keys(keyring=keyring, pem_files=pems or [])
    by_id = {k.key_id: k for k in trusted}

    def check(key_id: str, message: bytes, signature: bytes) -> bool:
        k = by_id.get(key_id)
        return bool(k is not None and k.can_verify and k.verify(message, signature))

    return check


def release_command(
    name: Annotated[str, typer.Argument(help="The model's name in the registry.")],
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Policy file (its model and data).")
    ] = Path("bastion.yaml"),
    key: Annotated[
        str | None, typer.Option(help="Signing key id (or prefix); default: the active key.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Keep the release folder here (default: temporary)."),
    ] = None,
    card: Annotated[
        Path | None,
        typer.Option(
            help="YAML or JSON file of model card fields: intended_use, limitations, owners..."
        ),
    ] = None,
    token: TokenOpt = None,
) -> None:
    """Release a model: scan it, run the gate (it must pass), build the model card and ML-BOM,
    sign the release folder, register it, record lineage and seal the audit trail.

    Each refusal says why (exit 1: the scan or the gate refused; 2: usage or input error).
    """
    from bastion.governance.release import ReleaseRefusedError, release

    fields = None
    if card is not None:
        import yaml

        try:
            fields = yaml.safe_load(card.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"--card {card}: {err}") from err
        if not isinstance(fields, dict):
            raise ConfigError(f"--card {card}: expected a mapping of card fields")
    try:
        result = release(
            config, name, registry=open_registry(token), key=key, out=out, card_fields=fields
        )
    except ReleaseRefusedError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    typer.echo(result.summary())
