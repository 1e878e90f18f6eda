"""Sign and verify a release folder as an OpenSSF model-signing bundle.

What it does. A release is a folder: model files, gate report (``report.json``), model card and
ML-BOM. :func:`sign_folder` hashes every regular file (SHA-256), builds the in-toto Statement
v1 that OpenSSF ``model_signing`` v1.0 builds, signs it in a DSSE envelope with an ECDSA P-256
key and writes a Sigstore bundle (``model.sig`` inside the folder by default). The evidence is
thus as tamper-evident as the weights. :func:`verify_folder` checks the signature against
trusted keys only (see :mod:`bastion.governance.keys`), then re-hashes the folder: an extra, a
missing or a changed file each yields a problem naming the file.

Why this format. Bundles interoperate both ways with the ``model_signing`` tool
(``model_signing verify key --public_key K.pub --signature DIR/model.sig DIR`` accepts what
Bastion signs, and Bastion verifies what ``model_signing sign key`` writes), so a release can be
checked without Bastion installed. Bastion does not need ``model_signing`` at run time: the
format is small and only ``cryptography`` touches keys.

The format (from ``model_signing`` 1.x, ``_signing/signing.py`` and ``sign_ec_key.py``):

- Statement: ``{"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": <folder
  name>, "digest": {"sha256": <root>}}], "predicateType":
  "https://model_signing/signature/v1.0", "predicate": {"serialization": {"method": "files",
  "hash_type": "sha256", "allow_symlinks": <bool>, "ignore_paths": [<signature file>]},
  "resources": [{"name": <relative POSIX path>, "algorithm": "sha256", "digest": <hex>}]}}``;
  resources sorted by path components; root = SHA-256 over the concatenated raw file digests
  in resource order.
- DSSE: payloadType ``application/vnd.in-toto+json``; the signature covers
  ``PAE = "DSSEv1" SP len(type) SP type SP len(payload) SP payload`` (ECDSA, SHA-256, DER).
- Bundle: ``{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
  "verificationMaterial": {"publicKey": {"hint": <hint>}, "tlogEntries": []}, "dsseEnvelope":
  {"payload": <base64>, "payloadType": ..., "signatures": [{"sig": <base64>, "keyid": ""}]}}``
  where the hint is model_signing's: hex SHA-256 of the public key's PEM text.

Rules, stricter than ``model_signing`` where safety asks for it:

- Symbolic links are followed only to regular files inside the folder (``allow_symlinks``
  is then recorded as true); links leaving the folder, links to folders and special files
  are refused when signing and reported when verifying.
- A top-level ``.git``, ``.github``, ``.gitattributes`` or ``.gitignore`` is refused when
  signing: ``model_signing`` skips those names by default, so a signature over them would not
  verify there, and skipping them here would leave files unsigned.
- When verifying, every file but the signature itself must be listed in the statement; paths
  the signer declared ignored are not exempt (a file appearing there is an extra file).
- The key hint is only a hint: the signature must verify with a trusted key. Keys carried in
  the bundle are never used. A revoked key's signatures fail, old ones included.

Example::

    result = sign_folder("release-7", signing_key)
    check = verify_folder("release-7", load_trusted_keys(keyring="keys/keyring.json"))
    assert check.ok, check.problems
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bastion._atomic import atomic_write_bytes
from bastion.exceptions import ConfigError
from bastion.governance.keys import Keyring, KeyStatus, SigningKey, TrustedKey

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "SIGNATURE_NAME",
    "STATEMENT_TYPE",
    "FileDigest",
    "SignatureResult",
    "VerificationResult",
    "build_statement",
    "hash_folder",
    "pae",
    "root_digest",
    "sign_folder",
    "verify_folder",
]

SIGNATURE_NAME = "model.sig"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
_GIT_NAMES = frozenset({".git", ".github", ".gitattributes", ".gitignore"})
_CHUNK = 1 << 20

# problems that tests assert; each names the file or key concerned
MSG_CHANGED = "changed file: {name} (signed sha256 {expected}, now {actual})"
MSG_MISSING = "missing file: {name} (signed but not in the folder)"
MSG_EXTRA = "extra file: {name} (in the folder but not signed)"
MSG_NO_SIGNATURE = "no signature: {path} does not exist"
MSG_BAD_BUNDLE = "malformed signature bundle {path}: {why}"
MSG_UNTRUSTED = (
    "signature does not verify with any trusted key (bundle key hint {hint}); "
    "the release was signed by an unknown key, or the bundle was altered"
)
MSG_BAD_SIGNATURE = "signature does not verify with the trusted key {key} named by the bundle"
MSG_REVOKED = "signed by key {key} ({label}), revoked at {when}: its signatures no longer verify"
MSG_NO_TRUSTED_KEYS = "no trusted keys were given: nothing can verify"
MSG_NOT_CHECKED = "file contents not checked: the signature did not verify"
MSG_ROOT = "statement is inconsistent: its resources hash to {actual}, its subject says {expected}"


@dataclass(frozen=True)
class FileDigest:
    """One signed file.

    Attributes:
        name: path relative to the folder, POSIX separators.
        sha256: hex digest of its content.
    """

    name: str
    sha256: str


@dataclass(frozen=True)
class SignatureResult:
    """What :func:`sign_folder` signed.

    Attributes:
        folder: the release folder.
        signature_path: the bundle written.
        key_id: id of the signing key (SHA-256 of its DER public key).
        root_digest: SHA-256 over the file digests (the statement's subject digest).
        files: every signed file, in statement order.
    """

    folder: Path
    signature_path: Path
    key_id: str
    root_digest: str
    files: tuple[FileDigest, ...]
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "folder": str(self.folder),
            "signature": str(self.signature_path),
            "key_id": self.key_id,
            "root_digest": self.root_digest,
            "files": [{"name": f.name, "sha256": f.sha256} for f in self.files],
        }


@dataclass(frozen=True)
class VerificationResult:
    """What :func:`verify_folder` found. A failed verification is data, not an exception.

    Attributes:
        ok: the signature verifies with a trusted, unrevoked key and every file matches.
        folder: the release folder.
        signature_path: the bundle read.
        key_id: the trusted key the signature verified with (None when none did).
        label: that key's label.
        root_digest: the statement's subject digest (None when the bundle was unreadable).
        files_checked: the files re-hashed and compared, sorted.
        problems: one line per problem, naming the file or the key.
    """

    ok: bool
    folder: Path
    signature_path: Path
    key_id: str | None = None
    label: str = ""
    root_digest: str | None = None
    files_checked: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "folder": str(self.folder),
            "signature": str(self.signature_path),
            "key_id": self.key_id,
            "label": self.label,
            "root_digest": self.root_digest,
            "files_checked": list(self.files_checked),
            "problems": list(self.problems),
        }


# -- hashing ------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sort_key(name: str) -> tuple[str, ...]:
    # model_signing sorts PurePosixPath objects, which compare component by component
    # ("a/b" before "a-c"), not as plain strings
    return PurePosixPath(name).parts


@dataclass
class _Scan:
    files: dict[str, Path] = field(default_factory=dict)  # relative name -> path to read
    issues: list[str] = field(default_factory=list)
    symlinks: list[str] = field(default_factory=list)


def _scan(folder: Path, exclude: Path | None) -> _Scan:
    """Regular files under ``folder`` (following safe links), and anything unsafe found.

    ``exclude`` (the signature file) is compared by resolved path.
    """
    scan = _Scan()
    root = folder.resolve()
    exclude = exclude.resolve() if exclude is not None else None

    def unreadable(err: OSError) -> None:
        where = Path(err.filename).relative_to(folder).as_posix() if err.filename else "?"
        scan.issues.append(f"unreadable folder: {where} ({err.strerror})")

    for current, dirs, files in os.walk(folder, onerror=unreadable, followlinks=False):
        here = Path(current)
        for name in sorted(dirs):
            if (here / name).is_symlink():  # os.walk lists links to folders as folders
                rel = (here / name).relative_to(folder).as_posix()
                scan.issues.append(f"symbolic link to a folder: {rel}")
        for name in files:
            path = here / name
            rel = path.relative_to(folder).as_posix()
            try:
                info = path.lstat()
            except OSError as err:
                scan.issues.append(f"unreadable: {rel} ({err.strerror})")
                continue
            target = path
            if stat.S_ISLNK(info.st_mode):
                target = path.resolve()
                if not target.is_relative_to(root):
                    scan.issues.append(f"symbolic link leaves the folder: {rel} -> {target}")
                    continue
                if exclude is not None and target == exclude:
                    scan.issues.append(f"symbolic link to the signature file: {rel}")
                    continue
                try:
                    info = target.stat()
                except OSError:
                    scan.issues.append(f"broken symbolic link: {rel}")
                    continue
                scan.symlinks.append(rel)
            elif exclude is not None and path.resolve() == exclude:
                continue
            if not stat.S_ISREG(info.st_mode):
                scan.issues.append(f"not a regular file: {rel}")
                continue
            scan.files[rel] = target
    return scan


def hash_folder(
    folder: str | os.PathLike[str], *, exclude: str | os.PathLike[str] | None = None
) -> tuple[FileDigest, ...]:
    """SHA-256 of every regular file under ``folder``, in statement order.

    Parameters:
        folder: the release folder.
        exclude: a file to leave out (the signature).

    Raises:
        ConfigError: the folder does not exist, or holds an unsafe entry (a symbolic link
            leaving it or to a folder, a special file).
    """
    files, _ = _hash(Path(folder), Path(exclude) if exclude is not None else None)
    return files


def _hash(base: Path, exclude: Path | None) -> tuple[tuple[FileDigest, ...], bool]:
    """(files in statement order, whether any is reached through a symbolic link)."""
    if not base.is_dir():
        raise ConfigError(f"release folder {base} does not exist or is not a folder")
    scan = _scan(base, exclude)
    if scan.issues:
        raise ConfigError(f"cannot sign {base}: " + "; ".join(scan.issues))
    names = sorted(scan.files, key=_sort_key)
    return tuple(FileDigest(n, _sha256_file(scan.files[n])) for n in names), bool(scan.symlinks)


def root_digest(files: Iterable[FileDigest]) -> str:
    """model_signing's subject digest: SHA-256 over the raw file digests, in order."""
    digest = hashlib.sha256()
    for item in files:
        digest.update(bytes.fromhex(item.sha256))
    return digest.hexdigest()


def build_statement(
    model_name: str,
    files: Iterable[FileDigest],
    *,
    ignore_paths: Iterable[str] = (),
    allow_symlinks: bool = False,
) -> dict[str, Any]:
    """The in-toto Statement v1 that model_signing v1.0 signs for a folder of ``files``."""
    items = list(files)
    serialization: dict[str, Any] = {
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": allow_symlinks,
    }
    ignored = list(ignore_paths)
    if ignored:  # model_signing writes the key only when something is ignored
        serialization["ignore_paths"] = ignored
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root_digest(items)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization,
            "resources": [
                {"name": f.name, "algorithm": "sha256", "digest": f.sha256} for f in items
            ],
        },
    }


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (lengths in bytes)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


# -- signing ------------------------------------------------------------------------------------


def _signature_location(folder: Path, signature: str | os.PathLike[str] | None) -> Path:
    path = Path(signature) if signature is not None else folder / SIGNATURE_NAME
    return path.absolute()


def _model_name(folder: Path) -> str:
    return folder.name or folder.resolve().name


def sign_folder(
    folder: str | os.PathLike[str],
    key: SigningKey,
    *,
    signature: str | os.PathLike[str] | None = None,
) -> SignatureResult:
    """Sign every file of ``folder`` and write the bundle.

    Parameters:
        folder: the release folder.
        key: the decrypted signing key (see :meth:`KeyStore.load_signing_key`).
        signature: where to write the bundle (default ``folder/model.sig``); an existing
            bundle there is replaced.

    Returns:
        A :class:`SignatureResult` listing what was signed.

    Raises:
        ConfigError: the folder is missing, holds an unsafe entry or git metadata.
    """
    base = Path(folder)
    sig_path = _signature_location(base, signature)
    if base.is_dir():
        git = sorted(n for n in os.listdir(base) if n in _GIT_NAMES)
        if git:
            raise ConfigError(
                f"cannot sign {base}: it holds {', '.join(git)}; model_signing skips git "
                "metadata by default, so the signature would not verify there: remove it from "
                "the release folder"
            )
    files, has_links = _hash(base, sig_path)
    ignore: list[str] = []
    with contextlib.suppress(ValueError):  # a signature outside the folder ignores nothing
        ignore.append(sig_path.resolve().relative_to(base.resolve()).as_posix())
    statement = build_statement(
        _model_name(base), files, ignore_paths=ignore, allow_symlinks=has_links
    )
    payload = json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")
    sig = key.sign(pae(PAYLOAD_TYPE, payload))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key.bundle_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode("ascii"), "keyid": ""}],
        },
    }
    atomic_write_bytes(sig_path, json.dumps(bundle).encode("utf-8"), mode=0o644)
    root = statement["subject"][0]["digest"]["sha256"]
    return SignatureResult(base, sig_path, key.key_id, root, files)


# -- verification -------------------------------------------------------------------------------


class _BundleError(ValueError):
    """The bundle cannot be read; the message says why."""


@dataclass(frozen=True)
class _Envelope:
    hint: str
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]


def _read_bundle(path: Path) -> _Envelope:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _BundleError(f"not JSON ({err})") from err
    if not isinstance(data, dict):
        raise _BundleError("not a JSON object")
    if data.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise _BundleError(
            f"mediaType must be {BUNDLE_MEDIA_TYPE!r}, got {data.get('mediaType')!r}"
        )
    material = data.get("verificationMaterial")
    hint = ""
    if isinstance(material, dict) and isinstance(material.get("publicKey"), dict):
        hint = str(material["publicKey"].get("hint") or "")
    envelope = data.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise _BundleError("no dsseEnvelope (only DSSE bundles are supported)")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise _BundleError("the envelope holds no signature")
    try:
        payload = base64.b64decode(str(envelope.get("payload", "")), validate=True)
        sigs = tuple(
            base64.b64decode(str(s.get("sig", "")), validate=True)
            for s in signatures
            if isinstance(s, dict)
        )
    except (binascii.Error, ValueError) as err:
        raise _BundleError(f"bad base64 ({err})") from err
    return _Envelope(hint, str(envelope.get("payloadType", "")), payload, sigs)


def _check_signature(
    envelope: _Envelope, keys: tuple[TrustedKey, ...]
) -> tuple[TrustedKey | None, list[str]]:
    """The trusted key the signature verifies with, or None and why not."""
    message = pae(envelope.payload_type, envelope.payload)
    named = [k for k in keys if envelope.hint and k.matches(envelope.hint)]
    # the hint is unsigned: try the key it names first, then every other trusted key
    order = named + [k for k in keys if k not in named]
    for key in order:
        # revoked keys are tried too, only to say why the release fails
        for sig in envelope.signatures:
            if key.signature_matches(message, sig):
                if key.status is KeyStatus.revoked:
                    return None, [
                        MSG_REVOKED.format(
                            key=key.key_id[:16], label=key.label or "no label", when=key.revoked_at
                        )
                    ]
                return key, []
    if named:
        return None, [MSG_BAD_SIGNATURE.format(key=named[0].key_id[:16])]
    return None, [MSG_UNTRUSTED.format(hint=envelope.hint[:16] or "none")]


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        bool(name)
        and not path.is_absolute()
        and "\\" not in name
        and all(part not in ("", ".", "..") for part in name.split("/"))
    )


@dataclass(frozen=True)
class _Statement:
    root: str
    files: tuple[FileDigest, ...]
    allow_symlinks: bool


def _parse_statement(envelope: _Envelope) -> _Statement:
    if envelope.payload_type != PAYLOAD_TYPE:
        raise _BundleError(f"payloadType must be {PAYLOAD_TYPE!r}, got {envelope.payload_type!r}")
    try:
        data = json.loads(envelope.payload)
        if data.get("_type") != STATEMENT_TYPE:
            raise _BundleError(f"statement _type must be {STATEMENT_TYPE!r}")
        if data.get("predicateType") != PREDICATE_TYPE:
            raise _BundleError(
                f"predicateType must be {PREDICATE_TYPE!r}, got {data.get('predicateType')!r}"
            )
        subjects = data["subject"]
        if not isinstance(subjects, list) or len(subjects) != 1:
            raise _BundleError("the statement must have exactly one subject")
        root = str(subjects[0]["digest"]["sha256"])
        predicate = data["predicate"]
        serialization = predicate["serialization"]
        if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
            raise _BundleError(
                "only file serialization with sha256 is supported, got method "
                f"{serialization.get('method')!r} and hash {serialization.get('hash_type')!r}"
            )
        files = []
        for resource in predicate["resources"]:
            name, algorithm = str(resource["name"]), resource.get("algorithm")
            digest = str(resource["digest"]).lower()
            if algorithm != "sha256" or len(digest) != 64:
                raise _BundleError(f"resource {name}: expected a sha256 digest")
            bytes.fromhex(digest)
            if not _safe_name(name):
                raise _BundleError(f"resource name {name!r} is not a relative path")
            files.append(FileDigest(name, digest))
    except _BundleError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise _BundleError(
            f"the statement does not have the model_signing v1.0 shape ({err})"
        ) from err
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise _BundleError("a resource is listed twice")
    return _Statement(root, tuple(files), bool(serialization.get("allow_symlinks", False)))


def _compare(folder: Path, sig_path: Path, statement: _Statement) -> tuple[list[str], list[str]]:
    """(files checked, problems) of the folder against the signed statement."""
    problems: list[str] = []
    scan = _scan(folder, sig_path)
    problems.extend(scan.issues)
    if scan.symlinks and not statement.allow_symlinks:
        problems.extend(
            f"symbolic link where the signature allows none: {n}" for n in sorted(scan.symlinks)
        )
    signed = {f.name: f.sha256 for f in statement.files}
    present = set(scan.files)
    for name in sorted(set(signed) - present, key=_sort_key):
        problems.append(MSG_MISSING.format(name=name))
    for name in sorted(present - set(signed), key=_sort_key):
        problems.append(MSG_EXTRA.format(name=name))
    checked = sorted(present & set(signed), key=_sort_key)
    for name in checked:
        actual = _sha256_file(scan.files[name])
        if actual != signed[name]:
            problems.append(
                MSG_CHANGED.format(name=name, expected=signed[name][:16], actual=actual[:16])
            )
    return checked, problems


def verify_folder(
    folder: str | os.PathLike[str],
    trusted_keys: Iterable[TrustedKey] | Keyring,
    *,
    signature: str | os.PathLike[str] | None = None,
) -> VerificationResult:
    """Check ``folder`` against its bundle with trusted keys only.

    Parameters:
        folder: the release folder.
        trusted_keys: keys from the keyring file or pinned in the configuration (see
            :func:`bastion.governance.keys.load_trusted_keys`), or a loaded keyring; never
            keys from the registry database.
        signature: the bundle (default ``folder/model.sig``).

    Returns:
        A :class:`VerificationResult`; ``ok`` is False with one problem per finding when the
        bundle is missing or malformed, the signature does not verify with a trusted unrevoked
        key, or a file was added, removed or changed.

    Raises:
        ConfigError: the folder does not exist.
    """
    base = Path(folder)
    if not base.is_dir():
        raise ConfigError(f"release folder {base} does not exist or is not a folder")
    sig_path = _signature_location(base, signature)
    keys = tuple(trusted_keys.keys if isinstance(trusted_keys, Keyring) else trusted_keys)

    def failed(*problems: str, **extra: Any) -> VerificationResult:
        return VerificationResult(False, base, sig_path, problems=tuple(problems), **extra)

    if not sig_path.is_file():
        return failed(MSG_NO_SIGNATURE.format(path=sig_path))
    try:
        envelope = _read_bundle(sig_path)
    except (_BundleError, OSError) as err:
        return failed(MSG_BAD_BUNDLE.format(path=sig_path.name, why=err))
    if not keys:
        return failed(MSG_NO_TRUSTED_KEYS)
    key, problems = _check_signature(envelope, keys)
    if key is None:
        return failed(*problems, MSG_NOT_CHECKED)
    # only now is the statement authentic: parse it
    try:
        statement = _parse_statement(envelope)
    except _BundleError as err:
        return failed(
            MSG_BAD_BUNDLE.format(path=sig_path.name, why=err), key_id=key.key_id, label=key.label
        )
    actual_root = root_digest(statement.files)
    if actual_root != statement.root:
        problems.append(MSG_ROOT.format(actual=actual_root[:16], expected=statement.root[:16]))
    checked, file_problems = _compare(base, sig_path, statement)
    problems.extend(file_problems)
    return VerificationResult(
        ok=not problems,
        folder=base,
        signature_path=sig_path,
        key_id=key.key_id,
        label=key.label,
        root_digest=statement.root,
        files_checked=tuple(checked),
        problems=tuple(problems),
    )
