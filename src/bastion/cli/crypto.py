"""``bastion encrypt``, ``bastion decrypt`` and ``bastion rewrap``: encryption at rest.

Thin commands over :mod:`bastion.governance.crypto` (imported when a command runs, so that
``bastion --help`` stays light). They are plain functions with typer ``Annotated`` parameters,
registered as top-level commands in :mod:`bastion.cli.main`::

    app.command("encrypt")(crypto.encrypt_command)
    app.command("decrypt")(crypto.decrypt_command)
    app.command("rewrap")(crypto.rewrap_command)

The key-encryption key (KEK) comes from ``--key-file PATH`` (32 raw bytes or their base64) or
``--key-env NAME`` (base64 in an environment variable); with neither, from the environment
variable ``BASTION_KEK``. ``bastion encrypt --generate-key PATH`` creates a key file.
Errors (wrong key, tampered file, missing file) are ``BastionError`` subclasses that ``run()``
prints as one line with exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from bastion.exceptions import ConfigError

__all__ = ["DEFAULT_KEY_ENV", "decrypt_command", "encrypt_command", "rewrap_command"]

DEFAULT_KEY_ENV = "BASTION_KEK"
ENCRYPTED_SUFFIX = ".enc"

KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        "-k",
        help="Key file: 32 raw bytes or their base64 (create one with --generate-key).",
    ),
]
KeyEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--key-env",
        help=f"Environment variable holding the key in base64 (default: {DEFAULT_KEY_ENV}).",
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="The file to write.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite the output file.")]


def _kek(key_file: Path | None, key_env: str | None, *, flag: str = "--key") -> bytes:
    """Load the key named by ``{flag}-file`` / ``{flag}-env``, else by ``BASTION_KEK``."""
    from bastion.governance.crypto import load_kek

    if key_file is not None and key_env is not None:
        raise ConfigError(f"{flag}-file and {flag}-env: give one key source, not both")
    if key_file is not None:
        return load_kek(key_file=key_file)
    if key_env is not None:
        return load_kek(key_env=key_env)
    if flag == "--key" and DEFAULT_KEY_ENV in os.environ:
        return load_kek(key_env=DEFAULT_KEY_ENV)
    hint = f", or set {DEFAULT_KEY_ENV}" if flag == "--key" else ""
    raise ConfigError(f"no key: give {flag}-file PATH or {flag}-env NAME{hint}")


def encrypt_command(
    src: Annotated[
        Path | None, typer.Argument(metavar="[SRC]", help="The file to encrypt.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help=f"The encrypted file (default: SRC{ENCRYPTED_SUFFIX})."),
    ] = None,
    key_file: KeyFileOpt = None,
    key_env: KeyEnvOpt = None,
    generate_key: Annotated[
        Path | None,
        typer.Option(
            "--generate-key",
            help=(
                "Create a new random key in this file (base64, readable by you only; never "
                "overwrites) and encrypt SRC, if given, with it."
            ),
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option("--chunk-size", help="Plaintext bytes per chunk (default 1 MiB)."),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Encrypt a file with AES-256-GCM under a fresh data key wrapped by your key.

    The file is streamed in authenticated chunks (memory stays flat on any size) and written
    atomically; SRC is left as it is. Back up the key: without it the file is lost.
    """
    from bastion.governance.crypto import DEFAULT_CHUNK_SIZE, encrypt_file, kek_id, write_kek

    if generate_key is not None:
        if key_file is not None or key_env is not None:
            raise ConfigError("--generate-key creates the key: leave out --key-file and --key-env")
        kek = write_kek(generate_key)
        typer.echo(
            f"wrote a new key to {generate_key} (key id {kek_id(kek)}); back it up: files "
            "encrypted under it cannot be decrypted without it"
        )
        if src is None:
            return
    elif src is None:
        raise ConfigError("give a FILE to encrypt, or --generate-key PATH to create a key")
    else:
        kek = _kek(key_file, key_env)
    target = out if out is not None else src.with_name(src.name + ENCRYPTED_SUFFIX)
    size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    result = encrypt_file(src, target, kek, chunk_size=size, overwrite=force)
    typer.echo(
        f"encrypted {src} -> {target} ({result.plaintext_bytes} bytes, {result.chunks} "
        f"chunk{'s' if result.chunks != 1 else ''}, key id {result.kek_id})"
    )


def decrypt_command(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="The encrypted file.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help=f"The plaintext file (default: SRC without {ENCRYPTED_SUFFIX})."
        ),
    ] = None,
    key_file: KeyFileOpt = None,
    key_env: KeyEnvOpt = None,
    force: ForceOpt = False,
) -> None:
    """Decrypt a file made by bastion encrypt, verifying every chunk.

    The output appears only once the whole file verified: a wrong key, a corrupted,
    truncated or tampered file is an error (exit 2) that leaves nothing behind.
    """
    from bastion.governance.crypto import decrypt_file

    if out is None:
        if src.suffix != ENCRYPTED_SUFFIX:
            raise ConfigError(f"--out is needed: {src} does not end in {ENCRYPTED_SUFFIX}")
        out = src.with_suffix("")
    kek = _kek(key_file, key_env)
    result = decrypt_file(src, out, kek, overwrite=force)
    typer.echo(
        f"decrypted {src} -> {out} ({result.plaintext_bytes} bytes, {result.chunks} "
        f"chunk{'s' if result.chunks != 1 else ''} verified)"
    )


def rewrap_command(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="FILE...", help="Encrypted files to move to the new key."),
    ],
    key_file: Annotated[
        Path | None, typer.Option("--key-file", "-k", help="The current key file.")
    ] = None,
    key_env: Annotated[
        str | None,
        typer.Option(
            "--key-env", help=f"Variable holding the current key (default: {DEFAULT_KEY_ENV})."
        ),
    ] = None,
    new_key_file: Annotated[
        Path | None, typer.Option("--new-key-file", help="The new key file.")
    ] = None,
    new_key_env: Annotated[
        str | None, typer.Option("--new-key-env", help="Variable holding the new key (base64).")
    ] = None,
) -> None:
    """Rotate the key: re-wrap each file's data key under a new key, without re-encrypting.

    Only each file's 97-byte header is rewritten (after it verified with the current key);
    the data is not read. Files are done in order; an error stops at the file it names.
    """
    from bastion.governance.crypto import rewrap

    old = _kek(key_file, key_env)
    new = _kek(new_key_file, new_key_env, flag="--new-key")
    for path in paths:
        result = rewrap(path, old, new)
        typer.echo(f"rewrapped {path}: key id {result.old_kek_id} -> {result.new_kek_id}")
