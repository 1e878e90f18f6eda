"""``bastion keys``: release-signing keys; and the calls behind ``bastion registry sign/verify``.

Thin commands over :mod:`bastion.governance.keys`. Private keys are stored encrypted with a
passphrase (``$BASTION_KEY_PASSPHRASE``, or the variable ``--passphrase-env`` names) or a
32-byte key-encryption key (``--kek-file`` or ``$BASTION_KEY_KEK``); secrets never travel on
the command line, where other users could read them in the process list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.exceptions import ConfigError

if TYPE_CHECKING:
    from bastion.governance.keys import KeyProtection, KeyStore, SigningKey, TrustedKey
    from bastion.governance.signing import SignatureResult, VerificationResult

__all__ = ["app", "render_verification", "sign_release", "verify_release"]

app = typer.Typer(
    help=(
        "Manage release-signing keys (ECDSA P-256). Private keys are stored encrypted in the "
        "key store; their public halves, with status active / retired / revoked, in the "
        "keyring file that verification trusts."
    ),
    no_args_is_help=True,
)


# the defaults of bastion.governance.keys, repeated so that `bastion --help` does not import
# cryptography (a test keeps them equal)
DEFAULT_PASSPHRASE_ENV = "BASTION_KEY_PASSPHRASE"
DEFAULT_KEK_ENV = "BASTION_KEY_KEK"


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Key store folder (default $BASTION_KEY_STORE, else $BASTION_HOME/keys, "
        "else .bastion/keys).",
    ),
]
KeyringOpt = Annotated[
    Path | None,
    typer.Option(
        "--keyring", help="Keyring JSON file (default $BASTION_KEYRING, else STORE/keyring.json)."
    ),
]
PassphraseEnvOpt = Annotated[
    str,
    typer.Option("--passphrase-env", help="Environment variable that holds the passphrase."),
]
KekEnvOpt = Annotated[
    str,
    typer.Option(
        "--kek-env",
        help="Environment variable that holds a 32-byte key-encryption key in base64.",
    ),
]
KekFileOpt = Annotated[
    Path | None,
    typer.Option("--kek-file", help="File holding a 32-byte key-encryption key (raw or base64)."),
]
LabelOpt = Annotated[
    str, typer.Option("--label", "-l", help="Who or what the key signs for (e.g. release).")
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="text or json.")]


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="BASTION_TOKEN", help="API token (or $BASTION_TOKEN).", show_envvar=False
    ),
]


def _registry_for_keys(token: str | None) -> Any:
    """The registry whose audit trail records key changes; the caller must manage keys
    (checked before anything changes)."""
    from bastion.cli.registry import open_registry

    reg = open_registry(token)
    reg.access.require(reg.identity, "keys.manage")
    return reg


def _audit(reg: Any, action: str, key: TrustedKey, **details: Any) -> None:
    reg.audit.append(
        reg.identity.name,
        action,
        f"key:{key.key_id}",
        {"label": key.label, "status": key.status.value, **details},
    )


def _protection(passphrase_env: str, kek_env: str, kek_file: Path | None) -> KeyProtection:
    from bastion.governance.keys import KeyProtection

    return KeyProtection.from_env(passphrase_env=passphrase_env, kek_env=kek_env, kek_file=kek_file)


def _describe(key: TrustedKey) -> dict[str, object]:
    return {k: v for k, v in key.to_dict().items() if k != "public_key"}


def _echo_key(verb: str, key: TrustedKey, store: KeyStore) -> None:
    typer.echo(f"{verb} key {key.key_id} (label {key.label}, {key.status.value})")
    typer.echo(f"  private key: {store.private_key_path(key.key_id)} (encrypted)")
    typer.echo(f"  public key:  {store.public_key_path(key.key_id)}")
    typer.echo(f"  keyring:     {store.keyring_path}")


@app.command()
def generate(
    label: LabelOpt = "release",
    store: StoreOpt = None,
    keyring: KeyringOpt = None,
    passphrase_env: PassphraseEnvOpt = DEFAULT_PASSPHRASE_ENV,
    kek_env: KekEnvOpt = DEFAULT_KEK_ENV,
    kek_file: KekFileOpt = None,
    output_format: FormatOpt = OutputFormat.text,
    token: TokenOpt = None,
) -> None:
    """Generate an active ECDSA P-256 key pair for LABEL and add it to the keyring."""
    from bastion.governance.keys import KeyStore

    reg = _registry_for_keys(token)
    key_store = KeyStore.at(store, keyring)
    key = key_store.generate(label, _protection(passphrase_env, kek_env, kek_file))
    _audit(reg, "key.generate", key)
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(_describe(key), indent=2))
    else:
        _echo_key("generated", key, key_store)


@app.command("list")
def list_keys(
    store: StoreOpt = None,
    keyring: KeyringOpt = None,
    output_format: FormatOpt = OutputFormat.text,
) -> None:
    """List the keys of the keyring: id, label, status, creation and revocation times."""
    from bastion.governance.keys import KeyStatus, KeyStore

    key_store = KeyStore.at(store, keyring)
    keys = key_store.list()
    if output_format is OutputFormat.json:
        typer.echo(json.dumps([_describe(k) for k in keys], indent=2))
        return
    if not keys:
        typer.echo(f"no keys in {key_store.keyring_path}")
        return
    typer.echo(f"{'key id':<18}{'label':<16}{'status':<9}{'created':<22}note")
    for key in keys:
        if key.status is KeyStatus.revoked:
            note = f"revoked {key.revoked_at}" + (
                f": {key.revocation_reason}" if key.revocation_reason else ""
            )
        elif key.superseded_by:
            note = f"superseded by {key.superseded_by[:16]}"
        elif key.supersedes:
            note = f"supersedes {key.supersedes[:16]}"
        else:
            note = ""
        typer.echo(
            f"{key.key_id[:16]:<18}{key.label:<16}{key.status.value:<9}{key.created:<22}{note}"
        )


@app.command()
def rotate(
    label: LabelOpt = "release",
    store: StoreOpt = None,
    keyring: KeyringOpt = None,
    passphrase_env: PassphraseEnvOpt = DEFAULT_PASSPHRASE_ENV,
    kek_env: KekEnvOpt = DEFAULT_KEK_ENV,
    kek_file: KekFileOpt = None,
    output_format: FormatOpt = OutputFormat.text,
    token: TokenOpt = None,
) -> None:
    """Replace LABEL's active key with a new one. The old key is retired: it still verifies
    the releases it signed until you revoke it, and signs nothing new."""
    from bastion.governance.keys import KeyStore

    reg = _registry_for_keys(token)
    key_store = KeyStore.at(store, keyring)
    new, old = key_store.rotate(label, _protection(passphrase_env, kek_env, kek_file))
    _audit(reg, "key.rotate", new, supersedes=old.key_id)
    if output_format is OutputFormat.json:
        typer.echo(json.dumps({"new": _describe(new), "old": _describe(old)}, indent=2))
    else:
        _echo_key("generated", new, key_store)
        typer.echo(f"retired key {old.key_id} (superseded by {new.key_id[:16]})")


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="Key id, or its first 8+ hex digits.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the keyring).")] = "",
    store: StoreOpt = None,
    keyring: KeyringOpt = None,
    output_format: FormatOpt = OutputFormat.text,
    token: TokenOpt = None,
) -> None:
    """Revoke a key, for good: none of its signatures verify any more, old releases included
    (a key-based signature carries no trusted time, so a stolen key could back-date one).
    Its private key file is deleted."""
    from bastion.governance.keys import KeyStore

    reg = _registry_for_keys(token)
    key_store = KeyStore.at(store, keyring)
    key = key_store.revoke(key_id, reason)
    _audit(reg, "key.revoke", key, reason=reason)
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(_describe(key), indent=2))
    else:
        typer.echo(f"revoked key {key.key_id} (label {key.label}) at {key.revoked_at}")


# -- calls behind `bastion registry sign` / `verify` -------------------------------------------


def sign_release(
    folder: str | os.PathLike[str],
    key: str | os.PathLike[str] | SigningKey | None = None,
    *,
    label: str | None = None,
    store: str | os.PathLike[str] | None = None,
    keyring: str | os.PathLike[str] | None = None,
    passphrase_env: str = DEFAULT_PASSPHRASE_ENV,
    kek_env: str = DEFAULT_KEK_ENV,
    kek_file: str | os.PathLike[str] | None = None,
    signature: str | os.PathLike[str] | None = None,
) -> SignatureResult:
    """Sign a release folder with a key from the store (or a PEM file).

    Parameters:
        folder: the release folder (model files, report.json, model card, ML-BOM).
        key: a key id (or 8+ hex digit prefix) in the store; a path to an encrypted PEM
            private key; a decrypted :class:`SigningKey`; or None for the active key (of
            ``label``).
        label: which label's active key, when ``key`` is None.
        store, keyring: the key store folder and keyring file (defaults as for the CLI).
        passphrase_env, kek_env, kek_file: where the passphrase or KEK comes from.
        signature: where to write the bundle (default ``folder/model.sig``).

    Returns:
        The :class:`SignatureResult`.

    Raises:
        ConfigError: no usable key (missing, retired, revoked, wrong passphrase), or the
            folder cannot be signed.

    Example::

        result = sign_release("releases/7", label="release")
    """
    from bastion.governance.keys import (
        KeyProtection,
        KeyStatus,
        KeyStore,
        SigningKey,
        load_private_key_file,
    )
    from bastion.governance.signing import sign_folder

    key_store = KeyStore.at(store, keyring)
    if isinstance(key, SigningKey):
        signer = key
    else:
        protection = KeyProtection.from_env(
            passphrase_env=passphrase_env, kek_env=kek_env, kek_file=kek_file
        )
        text = os.fspath(key) if key is not None else None
        if text is not None and Path(text).is_file():
            signer = load_private_key_file(text, protection)
        elif text is not None and (text.endswith(".pem") or os.sep in text):
            raise ConfigError(f"private key file {text} does not exist")
        else:
            signer = key_store.load_signing_key(text, protection, label=label)
    ring = key_store.keyring()
    listed = [k for k in ring.keys if k.key_id == signer.key_id]
    if listed and listed[0].status is not KeyStatus.active:
        raise ConfigError(
            f"key {signer.key_id[:16]} is {listed[0].status.value} in {ring.path}; "
            "it can no longer sign"
        )
    return sign_folder(folder, signer, signature=signature)


def verify_release(
    folder: str | os.PathLike[str],
    trusted_keys: Iterable[TrustedKey] | None = None,
    *,
    keyring: str | os.PathLike[str] | None = None,
    pem_files: Sequence[str | os.PathLike[str]] = (),
    pinned: dict[str, str] | None = None,
    signature: str | os.PathLike[str] | None = None,
) -> VerificationResult:
    """Verify a release folder against trusted keys pinned outside the registry database.

    Parameters:
        folder: the release folder.
        trusted_keys: keys already loaded (e.g. from the policy); when None, keys come from
            ``keyring``, ``pem_files`` and ``pinned``, and with none of those from the
            default keyring file.
        keyring: a keyring file.
        pem_files: trusted PEM public key files.
        pinned: key id -> PEM pairs (each id is checked against its PEM).
        signature: the bundle (default ``folder/model.sig``).

    Returns:
        The :class:`VerificationResult` (``ok`` False lists each problem).

    Raises:
        ConfigError: the folder or a key source is missing or invalid.

    Example::

        check = verify_release("releases/7", keyring="/etc/bastion/keyring.json")
        raise SystemExit(0 if check.ok else 1)
    """
    from bastion.governance.keys import default_keyring_path, load_trusted_keys
    from bastion.governance.signing import verify_folder

    if trusted_keys is None:
        if keyring is None and not pem_files and not pinned:
            keyring = default_keyring_path()
        trusted_keys = load_trusted_keys(keyring=keyring, pem_files=pem_files, pinned=pinned)
    return verify_folder(folder, tuple(trusted_keys), signature=signature)


def render_verification(result: VerificationResult) -> str:
    """A few lines for the terminal: the verdict, the key, then each problem."""
    if result.ok:
        head = (
            f"verified {result.folder}: {len(result.files_checked)} files signed by key "
            f"{(result.key_id or '')[:16]}" + (f" ({result.label})" if result.label else "")
        )
        return head + "\n"
    lines = [f"NOT verified {result.folder}:"] + [f"  - {p}" for p in result.problems]
    return "\n".join(lines) + "\n"
