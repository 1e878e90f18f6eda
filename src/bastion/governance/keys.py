"""Release-signing keys: ECDSA P-256 key pairs, an encrypted key store and a keyring of trusted
public keys.

What it does. :class:`KeyStore` generates, rotates and revokes signing keys. Each private key
lives in the store folder as ``<key id>.key.pem``, never in plaintext: either PKCS#8 encrypted
with a passphrase (``-----BEGIN ENCRYPTED PRIVATE KEY-----``, readable by OpenSSL and by
``model_signing``'s Python API given the password as bytes; its 1.1.1 CLI passes ``--password``
as a str, which ``cryptography`` rejects), or PKCS#8 DER wrapped with a 32-byte
key-encryption key (KEK) by AES key wrap with padding (RFC 5649), armoured as
``-----BEGIN BASTION WRAPPED PRIVATE KEY-----``. The public key sits beside it as
``<key id>.pub.pem`` (for ``model_signing verify key``).

Key ids. A key id is the hex SHA-256 of the public key's DER SubjectPublicKeyInfo: stable
whatever the text encoding. Sigstore bundles written by OpenSSF ``model_signing`` carry a
different *hint*, the hex SHA-256 of the PEM text of the same SubjectPublicKeyInfo (see
``model_signing/_signing/sign_ec_key.py``); :attr:`TrustedKey.bundle_hint` computes it so that
bundles interoperate both ways.

The keyring. A JSON file (``"schema": "bastion.keyring/v1"``; JSON because the standard
library reads and writes it, so no extra dependency) listing trusted public keys: key id,
label (owner), creation time, status and the PEM. Status is ``active`` (signs new releases and
verifies), ``retired`` (superseded by a rotation: still verifies the releases it signed, signs
nothing new) or ``revoked`` (verifies nothing, not even signatures made before the revocation:
key-based signatures carry no trusted timestamp, so a thief holding the private key could sign
a release and date it before the revocation; revoking means "assume compromised"). Rotation
records ``supersedes`` / ``superseded_by`` on both entries. Revocation cannot be undone.

Trust. Verification trusts only keys from the keyring file or public keys pinned in the
configuration (PEM files, or key id + PEM pairs whose id is checked): never keys stored in the
registry database, since whoever can write the database must not be able to make a release
verify. The keyring file is itself a trust anchor: deploy it read-only, or pin keys in the
policy instead.

Passphrases and KEKs come from the environment by default (``BASTION_KEY_PASSPHRASE``, or
``BASTION_KEY_KEK`` holding 32 bytes in base64) or from a KEK file; see
:class:`KeyProtection`. PKCS#8 passphrase encryption is PBKDF2-HMAC-SHA256 with only 2,048
rounds (what ``cryptography``'s ``BestAvailableEncryption`` writes, for compatibility with
other tools), so new keys require a passphrase of at least
:data:`MIN_PASSPHRASE_LENGTH` characters; a random KEK avoids the question.

Example::

    store = KeyStore.at("keys")
    key = store.generate("release", KeyProtection.from_passphrase("a long pass phrase"))
    signer = store.load_signing_key(key.key_id, KeyProtection.from_passphrase("a long pass phrase"))
    trusted = Keyring.load(store.keyring_path).keys
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion._atomic import atomic_write_bytes
from bastion.exceptions import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_KEK_ENV",
    "DEFAULT_PASSPHRASE_ENV",
    "KEYRING_SCHEMA",
    "MIN_PASSPHRASE_LENGTH",
    "KeyProtection",
    "KeyStatus",
    "KeyStore",
    "Keyring",
    "SigningKey",
    "TrustedKey",
    "bundle_hint_of",
    "default_keyring_path",
    "default_store_folder",
    "key_id_of",
    "load_private_key_file",
    "load_trusted_keys",
    "trusted_keys_from_pem_files",
]

KEYRING_SCHEMA = "bastion.keyring/v1"
DEFAULT_PASSPHRASE_ENV = "BASTION_KEY_PASSPHRASE"
DEFAULT_KEK_ENV = "BASTION_KEY_KEK"
STORE_ENV = "BASTION_KEY_STORE"
KEYRING_ENV = "BASTION_KEYRING"
MIN_PASSPHRASE_LENGTH = 12
KEK_BYTES = 32

_WRAPPED_LABEL = "BASTION WRAPPED PRIVATE KEY"
_WRAPPED_BEGIN = f"-----BEGIN {_WRAPPED_LABEL}-----"
_WRAPPED_END = f"-----END {_WRAPPED_LABEL}-----"
_ENCRYPTED_BEGIN = "-----BEGIN ENCRYPTED PRIVATE KEY-----"
_MIN_PREFIX = 8

# messages that tests assert
MSG_WRONG_PASSPHRASE = "cannot decrypt private key {key}: wrong passphrase (from {source})"
MSG_WRONG_KEK = "cannot unwrap private key {key}: wrong key-encryption key (from {source})"
MSG_NEEDS_PASSPHRASE = (
    "private key {key} is encrypted with a passphrase; set ${env} or pass --passphrase-env"
)
MSG_NEEDS_KEK = (
    "private key {key} is wrapped with a key-encryption key; set ${env} or pass --kek-file"
)
MSG_UNENCRYPTED = (
    "private key file {key} is not encrypted; Bastion only uses encrypted private keys "
    "(encrypt it with a passphrase: openssl pkcs8 -topk8 -v2 aes-256-cbc)"
)


class KeyStatus(StrEnum):
    """Lifecycle of a signing key (see the module docstring)."""

    active = "active"
    retired = "retired"
    revoked = "revoked"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _spki(public_key: ec.EllipticCurvePublicKey, encoding: serialization.Encoding) -> bytes:
    return public_key.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id_of(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key id: hex SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(_spki(public_key, serialization.Encoding.DER)).hexdigest()


def bundle_hint_of(public_key: ec.EllipticCurvePublicKey) -> str:
    """The ``publicKey.hint`` OpenSSF ``model_signing`` writes and checks: hex SHA-256 of the
    PEM text of the SubjectPublicKeyInfo."""
    return hashlib.sha256(_spki(public_key, serialization.Encoding.PEM)).hexdigest()


def _p256_error(key: object, what: str) -> ConfigError:
    name = getattr(getattr(key, "curve", None), "name", None) or type(key).__name__
    return ConfigError(f"{what}: expected an ECDSA P-256 (secp256r1) key, got {name}")


def _p256_public(key: object, what: str) -> ec.EllipticCurvePublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise _p256_error(key, what)


def _p256_private(key: object, what: str) -> ec.EllipticCurvePrivateKey:
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise _p256_error(key, what)


def _public_key_from_pem(pem: str | bytes, what: str) -> ec.EllipticCurvePublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{what}: not a PEM public key ({err})") from err
    return _p256_public(key, what)


# -- trusted public keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedKey:
    """A public key that verification may trust, with its keyring metadata.

    Attributes:
        key_id: hex SHA-256 of the DER SubjectPublicKeyInfo; checked against ``public_key_pem``.
        public_key_pem: the SubjectPublicKeyInfo in PEM.
        label: who or what the key belongs to (e.g. ``release``, ``ci@hospital``).
        created: ISO 8601 UTC time of generation ("" when unknown, e.g. a pinned PEM file).
        status: active, retired or revoked.
        revoked_at: ISO 8601 UTC time of revocation, for revoked keys.
        revocation_reason: free text given at revocation.
        supersedes: key id this key replaced in a rotation.
        superseded_by: key id that replaced this key in a rotation.

    Raises:
        ConfigError: the PEM is not a P-256 public key, or its id is not ``key_id``.
    """

    key_id: str
    public_key_pem: str
    label: str = ""
    created: str = ""
    status: KeyStatus = KeyStatus.active
    revoked_at: str | None = None
    revocation_reason: str | None = None
    supersedes: str | None = None
    superseded_by: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", self.key_id.strip().lower())
        actual = key_id_of(self.public_key)
        if actual != self.key_id:
            raise ConfigError(
                f"pinned key id {self.key_id} does not match its public key (whose id is {actual})"
            )
        object.__setattr__(self, "status", KeyStatus(self.status))

    @cached_property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public key object."""
        return _public_key_from_pem(self.public_key_pem, f"key {self.key_id[:16]}")

    @property
    def bundle_hint(self) -> str:
        """The hint ``model_signing`` puts in a bundle signed with this key."""
        return bundle_hint_of(self.public_key)

    @property
    def can_verify(self) -> bool:
        """Whether signatures by this key verify (active or retired)."""
        return self.status is not KeyStatus.revoked

    def matches(self, hint: str) -> bool:
        """Whether a bundle's key hint names this key (its id or its model_signing hint)."""
        hint = hint.strip().lower()
        return hint in (self.key_id, self.bundle_hint)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (DER ECDSA over SHA-256) signs ``message`` with this key.

        A revoked key never verifies.
        """
        return self.can_verify and self.signature_matches(message, signature)

    def signature_matches(self, message: bytes, signature: bytes) -> bool:
        """The cryptographic check alone, whatever the status (to say *why* a release fails:
        signed by a revoked key rather than by an unknown one)."""
        try:
            self.public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    @classmethod
    def from_pem(
        cls, pem: str | bytes, *, label: str = "", status: KeyStatus = KeyStatus.active
    ) -> TrustedKey:
        """A trusted key from a PEM public key (its id is computed)."""
        key = _public_key_from_pem(pem, label or "public key")
        text = _spki(key, serialization.Encoding.PEM).decode("ascii")
        return cls(key_id=key_id_of(key), public_key_pem=text, label=label, status=status)

    def to_dict(self) -> dict[str, Any]:
        """The keyring entry."""
        return {
            "key_id": self.key_id,
            "label": self.label,
            "created": self.created,
            "status": self.status.value,
            "revoked_at": self.revoked_at,
            "revocation_reason": self.revocation_reason,
            "supersedes": self.supersedes,
            "superseded_by": self.superseded_by,
            "public_key": self.public_key_pem,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "keyring") -> TrustedKey:
        """A keyring entry back; ConfigError names what is wrong."""
        try:
            status = KeyStatus(data.get("status", "active"))
        except ValueError:
            raise ConfigError(
                f"{where}: status must be active, retired or revoked, got {data.get('status')!r}"
            ) from None
        for name in ("key_id", "public_key"):
            if not isinstance(data.get(name), str):
                raise ConfigError(f"{where}: entry lacks {name!r}")
        if status is KeyStatus.revoked and not data.get("revoked_at"):
            raise ConfigError(f"{where}: revoked key {data['key_id']} lacks revoked_at")
        return cls(
            key_id=str(data["key_id"]).lower(),
            public_key_pem=str(data["public_key"]),
            label=str(data.get("label") or ""),
            created=str(data.get("created") or ""),
            status=status,
            revoked_at=data.get("revoked_at"),
            revocation_reason=data.get("revocation_reason"),
            supersedes=data.get("supersedes"),
            superseded_by=data.get("superseded_by"),
        )


@dataclass(frozen=True)
class Keyring:
    """The keyring file: trusted public keys and their status.

    Attributes:
        path: where it is stored.
        keys: its entries, in the order they were added.
    """

    path: Path
    keys: tuple[TrustedKey, ...] = ()

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, missing_ok: bool = False) -> Keyring:
        """Read a keyring file.

        Parameters:
            path: the JSON file.
            missing_ok: return an empty keyring when the file does not exist (key management);
                verification leaves it False, so a missing keyring is an error, not "no keys".

        Raises:
            ConfigError: the file is missing (unless ``missing_ok``), not JSON, of another
                schema, or an entry is invalid.
        """
        file = Path(path)
        if not file.exists():
            if missing_ok:
                return cls(file)
            raise ConfigError(f"keyring {file} does not exist (create one: bastion keys generate)")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"keyring {file}: cannot read it as JSON ({err})") from err
        if not isinstance(data, dict) or data.get("schema") != KEYRING_SCHEMA:
            raise ConfigError(f"keyring {file}: expected schema {KEYRING_SCHEMA!r}")
        entries = data.get("keys")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"keyring {file}: 'keys' must be a list of objects")
        keys = tuple(TrustedKey.from_dict(e, f"keyring {file}") for e in entries)
        ids = [k.key_id for k in keys]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"keyring {file}: a key id is listed twice")
        return cls(file, keys)

    def save(self) -> None:
        """Write the keyring atomically (a crash leaves the old file or the new one)."""
        text = json.dumps(
            {"schema": KEYRING_SCHEMA, "keys": [k.to_dict() for k in self.keys]}, indent=2
        )
        atomic_write_bytes(self.path, (text + "\n").encode("utf-8"), mode=0o644)

    def get(self, ref: str) -> TrustedKey:
        """The key whose id is ``ref`` or starts with it (at least 8 hex digits).

        Raises:
            ConfigError: no key, or several, match.
        """
        ref = ref.strip().lower()
        exact = [k for k in self.keys if k.key_id == ref]
        if exact:
            return exact[0]
        found = [k for k in self.keys if len(ref) >= _MIN_PREFIX and k.key_id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if found:
            raise ConfigError(f"key id prefix {ref!r} is ambiguous in keyring {self.path}")
        raise ConfigError(
            f"no key {ref!r} in keyring {self.path} (give its id or at least {_MIN_PREFIX} "
            "leading hex digits; bastion keys list shows them)"
        )

    def active(self, label: str | None = None) -> TrustedKey:
        """The active key (of ``label``, when given).

        Raises:
            ConfigError: none, or several, are active.
        """
        found = [
            k
            for k in self.keys
            if k.status is KeyStatus.active and (label is None or k.label == label)
        ]
        if len(found) == 1:
            return found[0]
        which = f" with label {label!r}" if label is not None else ""
        if not found:
            raise ConfigError(f"no active key{which} in keyring {self.path}")
        raise ConfigError(
            f"several active keys{which} in keyring {self.path}: "
            f"{', '.join(k.key_id[:16] for k in found)}; name one"
        )

    def with_key(self, key: TrustedKey) -> Keyring:
        """A copy with ``key`` added, or replacing the entry with the same id."""
        keys = [k for k in self.keys if k.key_id != key.key_id]
        index = next((i for i, k in enumerate(self.keys) if k.key_id == key.key_id), len(keys))
        keys.insert(index, key)
        return replace(self, keys=tuple(keys))

    def verify_signature(self, key_id: str, message: bytes, signature: bytes) -> bool:
        """``(key_id, message, signature) -> bool`` for callers such as the audit chain's
        checkpoints: True only for a listed, non-revoked key whose signature verifies."""
        match = [k for k in self.keys if k.key_id == key_id.lower()]
        return bool(match) and match[0].verify(message, signature)


def trusted_keys_from_pem_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[TrustedKey, ...]:
    """Trusted keys pinned as PEM public key files (label: the file name).

    Raises:
        ConfigError: a file is missing or not a P-256 public key.
    """
    keys = []
    for path in paths:
        file = Path(path)
        try:
            data = file.read_bytes()
        except OSError as err:
            raise ConfigError(f"trusted public key {file}: cannot read it ({err})") from err
        keys.append(TrustedKey.from_pem(data, label=file.name))
    return tuple(keys)


def load_trusted_keys(
    *,
    keyring: str | os.PathLike[str] | Keyring | None = None,
    pem_files: Iterable[str | os.PathLike[str]] = (),
    pinned: Mapping[str, str] | None = None,
) -> tuple[TrustedKey, ...]:
    """Every key that verification trusts, from the keyring file and the configuration.

    Parameters:
        keyring: a keyring file (or a loaded :class:`Keyring`).
        pem_files: PEM public key files pinned in the configuration.
        pinned: key id -> PEM pairs pinned in the configuration; each id is checked against
            its PEM.

    Returns:
        One :class:`TrustedKey` per key id. A key revoked in the keyring stays revoked even
        when the configuration also pins it: revocation is sticky.

    Raises:
        ConfigError: a source is unreadable, or a pinned id does not match its PEM.
    """
    found: dict[str, TrustedKey] = {}

    def add(key: TrustedKey) -> None:
        old = found.get(key.key_id)
        if old is None or (key.status is KeyStatus.revoked and old.status is not key.status):
            found[key.key_id] = key

    if keyring is not None:
        ring = keyring if isinstance(keyring, Keyring) else Keyring.load(keyring)
        for key in ring.keys:
            add(key)
    for key in trusted_keys_from_pem_files(pem_files):
        add(key)
    for key_id, pem in (pinned or {}).items():
        base = TrustedKey.from_pem(pem, label=f"pinned {key_id[:16]}")
        add(replace(base, key_id=key_id.lower()))  # __post_init__ checks the id
    return tuple(found.values())


# -- private keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyProtection:
    """How private keys are encrypted: a passphrase or a 32-byte key-encryption key (KEK).

    Loading uses whichever the key file needs; writing a new key needs exactly one of them.
    The secrets never appear in ``repr``.

    Attributes:
        passphrase: PKCS#8 passphrase (bytes).
        kek: 32-byte AES key for RFC 5649 key wrap.
        passphrase_source / kek_source: where each came from, for error messages.
    """

    passphrase: bytes | None = field(default=None, repr=False)
    kek: bytes | None = field(default=None, repr=False)
    passphrase_source: str = DEFAULT_PASSPHRASE_ENV
    kek_source: str = DEFAULT_KEK_ENV

    def __post_init__(self) -> None:
        if self.passphrase is None and self.kek is None:
            raise ConfigError("key protection: give a passphrase or a key-encryption key")
        if self.passphrase is not None and not self.passphrase:
            raise ConfigError(f"the passphrase from {self.passphrase_source} is empty")
        if self.kek is not None and len(self.kek) != KEK_BYTES:
            raise ConfigError(
                f"the key-encryption key from {self.kek_source} must be {KEK_BYTES} bytes, "
                f"got {len(self.kek)}"
            )

    @classmethod
    def from_passphrase(cls, passphrase: str | bytes, source: str = "the caller") -> KeyProtection:
        """Protection by passphrase."""
        raw = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
        return cls(passphrase=raw, passphrase_source=source)

    @classmethod
    def from_kek(cls, kek: bytes, source: str = "the caller") -> KeyProtection:
        """Protection by a 32-byte key-encryption key."""
        return cls(kek=bytes(kek), kek_source=source)

    @classmethod
    def from_env(
        cls,
        *,
        passphrase_env: str = DEFAULT_PASSPHRASE_ENV,
        kek_env: str = DEFAULT_KEK_ENV,
        kek_file: str | os.PathLike[str] | None = None,
    ) -> KeyProtection:
        """Read the passphrase and/or the KEK from the environment (or the KEK from a file).

        The KEK format is that of :func:`bastion.governance.crypto.load_kek`: a key file holds
        32 raw bytes or their base64, a variable holds the base64 (``openssl rand -base64 32``).

        Parameters:
            passphrase_env: variable holding the passphrase.
            kek_env: variable holding the KEK.
            kek_file: a file holding the KEK; it replaces ``kek_env``.

        Raises:
            ConfigError: nothing is set, or the KEK is malformed.
        """
        # one KEK format across Bastion: the key files of encryption at rest
        from bastion.governance.crypto import load_kek

        passphrase = os.environ.get(passphrase_env)
        kek: bytes | None = None
        kek_source = f"${kek_env}"
        if kek_file is not None:
            kek_source = str(kek_file)
            kek = load_kek(key_file=kek_file)
        elif os.environ.get(kek_env):
            kek = load_kek(key_env=kek_env)
        if not passphrase and kek is None:
            raise ConfigError(
                f"no key protection: set ${passphrase_env} to a passphrase, or ${kek_env} / "
                "--kek-file to a 32-byte key-encryption key"
            )
        return cls(
            passphrase=passphrase.encode("utf-8") if passphrase else None,
            kek=kek,
            passphrase_source=f"${passphrase_env}",
            kek_source=kek_source,
        )

    def _env_name(self, source: str, default: str) -> str:
        return source[1:] if source.startswith("$") else default

    def encrypt(self, private_key: ec.EllipticCurvePrivateKey) -> bytes:
        """The PEM text a new key is stored as (see the module docstring).

        Raises:
            ConfigError: both or neither protections are set, or the passphrase is too short.
        """
        if self.passphrase is not None and self.kek is not None:
            raise ConfigError(
                f"both a passphrase ({self.passphrase_source}) and a key-encryption key "
                f"({self.kek_source}) are set; a new key is protected by one: unset one of them"
            )
        if self.kek is not None:
            der = private_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            wrapped = keywrap.aes_key_wrap_with_padding(self.kek, der)
            body = base64.encodebytes(wrapped).decode("ascii").replace("\n", "")
            lines = [body[i : i + 64] for i in range(0, len(body), 64)]
            return "\n".join([_WRAPPED_BEGIN, *lines, _WRAPPED_END, ""]).encode("ascii")
        if self.passphrase is None:  # unreachable: __post_init__ requires one of the two
            raise ConfigError("key protection: give a passphrase or a key-encryption key")
        if len(self.passphrase.decode("utf-8", "replace")) < MIN_PASSPHRASE_LENGTH:
            raise ConfigError(
                f"the passphrase from {self.passphrase_source} is too short: new keys need at "
                f"least {MIN_PASSPHRASE_LENGTH} characters (or use a key-encryption key)"
            )
        return private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self.passphrase),
        )

    def decrypt(self, data: bytes, what: str) -> ec.EllipticCurvePrivateKey:
        """The private key in ``data`` (a file written by :meth:`encrypt`).

        Raises:
            ConfigError: the protection needed is missing or wrong, or the file is malformed.
        """
        text = data.decode("ascii", "replace")
        if _WRAPPED_BEGIN in text:
            if self.kek is None:
                env = self._env_name(self.kek_source, DEFAULT_KEK_ENV)
                raise ConfigError(MSG_NEEDS_KEK.format(key=what, env=env))
            body = text.split(_WRAPPED_BEGIN, 1)[1].split(_WRAPPED_END, 1)[0]
            try:
                wrapped = base64.b64decode("".join(body.split()), validate=True)
                der = keywrap.aes_key_unwrap_with_padding(self.kek, wrapped)
            except keywrap.InvalidUnwrap:
                raise ConfigError(MSG_WRONG_KEK.format(key=what, source=self.kek_source)) from None
            except (binascii.Error, ValueError) as err:
                raise ConfigError(f"private key {what}: malformed wrapped key ({err})") from err
            key = serialization.load_der_private_key(der, None)
        elif _ENCRYPTED_BEGIN in text:
            if self.passphrase is None:
                env = self._env_name(self.passphrase_source, DEFAULT_PASSPHRASE_ENV)
                raise ConfigError(MSG_NEEDS_PASSPHRASE.format(key=what, env=env))
            try:
                key = serialization.load_pem_private_key(data, self.passphrase)
            except ValueError:
                raise ConfigError(
                    MSG_WRONG_PASSPHRASE.format(key=what, source=self.passphrase_source)
                ) from None
        else:
            raise ConfigError(MSG_UNENCRYPTED.format(key=what))
        return _p256_private(key, f"private key {what}")


@dataclass(frozen=True)
class SigningKey:
    """A decrypted private key, ready to sign (keep it in memory only).

    Attributes:
        key_id: hex SHA-256 of the DER SubjectPublicKeyInfo.
        private_key: the ECDSA P-256 private key.
        label: the keyring label, when known.
    """

    key_id: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    label: str = ""

    def __post_init__(self) -> None:
        _p256_private(self.private_key, "signing key")
        if key_id_of(self.private_key.public_key()) != self.key_id:
            raise ConfigError(f"signing key {self.key_id[:16]}: id does not match the key")

    @classmethod
    def from_private_key(cls, key: ec.EllipticCurvePrivateKey, label: str = "") -> SigningKey:
        """Wrap a private key object (its id is computed)."""
        key = _p256_private(key, "signing key")
        return cls(key_id_of(key.public_key()), key, label)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def bundle_hint(self) -> str:
        """The ``publicKey.hint`` written into bundles (model_signing's convention)."""
        return bundle_hint_of(self.public_key)

    def public_pem(self) -> str:
        return _spki(self.public_key, serialization.Encoding.PEM).decode("ascii")

    def trusted(self) -> TrustedKey:
        """This key's public half as a :class:`TrustedKey` (active)."""
        return TrustedKey(self.key_id, self.public_pem(), label=self.label)

    def sign(self, message: bytes) -> bytes:
        """DER ECDSA signature over SHA-256 of ``message``."""
        return self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))


def load_private_key_file(
    path: str | os.PathLike[str],
    protection: KeyProtection | None,
    *,
    allow_unencrypted: bool = False,
) -> SigningKey:
    """Load a PEM private key file (one of the store's, or any PKCS#8 / SEC1 PEM).

    Parameters:
        path: the PEM file.
        protection: passphrase or KEK; None only for an unencrypted file.
        allow_unencrypted: accept a plaintext key (e.g. one ``model_signing`` users keep);
            refused by default because Bastion stores keys encrypted.

    Raises:
        ConfigError: the file is missing, unencrypted (unless allowed), the protection is
            wrong, or the key is not P-256.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read private key {file}: {err}") from err
    text = data.decode("ascii", "replace")
    if _WRAPPED_BEGIN not in text and _ENCRYPTED_BEGIN not in text:
        if not allow_unencrypted:
            raise ConfigError(MSG_UNENCRYPTED.format(key=file))
        try:
            key = serialization.load_pem_private_key(data, None)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"private key {file}: not a PEM private key ({err})") from err
        return SigningKey.from_private_key(_p256_private(key, f"private key {file}"))
    if protection is None:
        raise ConfigError(
            f"private key {file} is encrypted: set ${DEFAULT_PASSPHRASE_ENV} or ${DEFAULT_KEK_ENV}"
        )
    return SigningKey.from_private_key(protection.decrypt(data, str(file)))


# -- the key store ------------------------------------------------------------------------------


def default_store_folder() -> Path:
    """``$BASTION_KEY_STORE``, else ``$BASTION_HOME/keys``, else ``./.bastion/keys``."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV]).absolute()
    return (Path(os.environ.get("BASTION_HOME") or ".bastion") / "keys").absolute()


def default_keyring_path(store: str | os.PathLike[str] | None = None) -> Path:
    """``$BASTION_KEYRING``, else ``keyring.json`` in the key store folder."""
    if os.environ.get(KEYRING_ENV):
        return Path(os.environ[KEYRING_ENV]).absolute()
    return (Path(store) if store is not None else default_store_folder()) / "keyring.json"


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite a key file; the mode is set at creation, so the secret is never
    # readable by others, not even for an instant
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


@dataclass(frozen=True)
class KeyStore:
    """A folder of encrypted private keys plus the keyring of their public halves.

    Attributes:
        folder: holds ``<key id>.key.pem`` (encrypted, mode 0600) and ``<key id>.pub.pem``.
        keyring_path: the keyring JSON file.
    """

    folder: Path
    keyring_path: Path

    @classmethod
    def at(
        cls,
        folder: str | os.PathLike[str] | None = None,
        keyring: str | os.PathLike[str] | None = None,
    ) -> KeyStore:
        """The store in ``folder`` (default :func:`default_store_folder`) with ``keyring``
        (default :func:`default_keyring_path` of that folder)."""
        base = Path(folder).absolute() if folder is not None else default_store_folder()
        ring = Path(keyring).absolute() if keyring is not None else default_keyring_path(base)
        return cls(base, ring)

    def keyring(self) -> Keyring:
        """The keyring as stored now (empty when none exists yet)."""
        return Keyring.load(self.keyring_path, missing_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Keyring]:
        """The keyring, read under an exclusive lock held until the caller has saved it, so
        two concurrent ``bastion keys`` commands cannot drop each other's entries."""
        self.keyring_path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.keyring_path.with_name(self.keyring_path.name + ".lock")
        with open(lock, "a+b") as handle:
            if fcntl is not None:  # POSIX; elsewhere, one writer at a time is the caller's job
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield self.keyring()
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def private_key_path(self, key_id: str) -> Path:
        return self.folder / f"{key_id}.key.pem"

    def public_key_path(self, key_id: str) -> Path:
        return self.folder / f"{key_id}.pub.pem"

    def list(self) -> tuple[TrustedKey, ...]:
        """Every key in the keyring."""
        return self.keyring().keys

    def _create(self, label: str, protection: KeyProtection, **meta: Any) -> TrustedKey:
        label = label.strip()
        if not label:
            raise ConfigError("a key needs a non-empty --label")
        private = ec.generate_private_key(ec.SECP256R1())
        encrypted = protection.encrypt(private)  # before touching the disk: a bad passphrase
        signer = SigningKey.from_private_key(private, label)  # leaves nothing behind
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.folder, 0o700)
        _write_new(self.private_key_path(signer.key_id), encrypted, 0o600)
        _write_new(self.public_key_path(signer.key_id), signer.public_pem().encode(), 0o644)
        return TrustedKey(
            key_id=signer.key_id,
            public_key_pem=signer.public_pem(),
            label=label,
            created=_now(),
            **meta,
        )

    def generate(self, label: str, protection: KeyProtection) -> TrustedKey:
        """Generate an active key pair for ``label`` and add it to the keyring.

        Raises:
            ConfigError: ``label`` already has an active key (rotate it instead), or the
                protection cannot encrypt (see :meth:`KeyProtection.encrypt`).
        """
        with self._locked() as ring:
            clash = [k for k in ring.keys if k.label == label and k.status is KeyStatus.active]
            if clash:
                raise ConfigError(
                    f"label {label!r} already has the active key {clash[0].key_id[:16]}; "
                    "rotate it with: bastion keys rotate --label " + label
                )
            key = self._create(label, protection)
            ring.with_key(key).save()
        return key

    def rotate(self, label: str, protection: KeyProtection) -> tuple[TrustedKey, TrustedKey]:
        """Replace the active key of ``label`` with a new one.

        The old key becomes ``retired``: it still verifies the releases it signed, until it is
        revoked. Both entries record the succession.

        Returns:
            (new key, old key).

        Raises:
            ConfigError: ``label`` has no active key, or the protection cannot encrypt.
        """
        with self._locked() as ring:
            old = ring.active(label)
            new = self._create(label, protection, supersedes=old.key_id)
            retired = replace(old, status=KeyStatus.retired, superseded_by=new.key_id)
            ring.with_key(retired).with_key(new).save()
        return new, retired

    def revoke(self, ref: str, reason: str = "") -> TrustedKey:
        """Revoke a key: from now on none of its signatures verify, old ones included.

        The private key file is deleted (a revoked key must never sign again). Revoking the
        active key leaves its label without one: generate or rotate to sign again.

        Raises:
            ConfigError: no such key, or it is already revoked.
        """
        with self._locked() as ring:
            key = ring.get(ref)
            if key.status is KeyStatus.revoked:
                raise ConfigError(f"key {key.key_id[:16]} was already revoked at {key.revoked_at}")
            revoked = replace(
                key, status=KeyStatus.revoked, revoked_at=_now(), revocation_reason=reason or None
            )
            ring.with_key(revoked).save()
        with contextlib.suppress(FileNotFoundError):
            self.private_key_path(key.key_id).unlink()
        return revoked

    def load_signing_key(
        self, ref: str | None, protection: KeyProtection, *, label: str | None = None
    ) -> SigningKey:
        """Decrypt a key that may sign: the key ``ref`` (id or prefix), else the active key
        (of ``label``).

        Raises:
            ConfigError: no such key, the key is retired or revoked, its file is missing, or
                the passphrase / KEK is wrong.
        """
        ring = self.keyring()
        key = ring.get(ref) if ref else ring.active(label)
        if key.status is not KeyStatus.active:
            raise ConfigError(
                f"key {key.key_id[:16]} is {key.status.value}"
                + (f" (superseded by {key.superseded_by[:16]})" if key.superseded_by else "")
                + "; it can no longer sign"
            )
        path = self.private_key_path(key.key_id)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"private key of {key.key_id[:16]} not found: {err}") from err
        private = protection.decrypt(data, key.key_id[:16])
        if key_id_of(private.public_key()) != key.key_id:  # a key file swapped for another
            raise ConfigError(f"private key file {path} does not hold key {key.key_id[:16]}")
        return SigningKey(key.key_id, private, key.label)
