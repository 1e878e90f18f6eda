"""A content-addressed file store: every blob lives at ``store/sha256/<2 hex>/<64 hex>``.

A blob is written to a temporary file in the same folder, hashed while it is copied, and
renamed into place only when complete, so a crash never leaves a partial blob under a valid
name; a blob already present is not written twice. Reads re-hash (:meth:`Store.verify`), so
a blob changed on disk is caught before it is served or released.

Encryption at rest: with a key-encryption key (``kek``, e.g. from ``BASTION_STORE_KEK``),
blobs are stored encrypted (:mod:`bastion.governance.crypto`: AES-256-GCM, a data key per
blob) under the digest of their *plaintext*; reads decrypt, verifying every chunk, then
re-hash. The plaintext copy made while hashing never outlives :meth:`Store.put`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bastion.exceptions import DataError

__all__ = ["Store"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Store:
    """The blob store under ``root``; blobs are encrypted when ``kek`` is set."""

    root: Path
    kek: bytes | None = field(default=None, repr=False)  # never in logs or tracebacks

    def path_of(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise DataError(f"not a sha256 digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def put(self, source: str | os.PathLike[str]) -> tuple[str, int]:
        """Copy a file in; returns (sha256, size)."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="put-")
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            sha = digest.hexdigest()
            final = self.path_of(sha)
            if final.is_file():
                os.unlink(tmp_name)
            elif self.kek is not None:
                from bastion.governance.crypto import encrypt_file

                final.parent.mkdir(parents=True, exist_ok=True)
                encrypt_file(tmp_name, final, self.kek)
                os.unlink(tmp_name)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, final)
            return sha, size
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def encrypted(self, sha256: str) -> bool:
        from bastion.governance.crypto import is_encrypted

        path = self.path_of(sha256)
        return path.is_file() and is_encrypted(path)

    def verify(self, sha256: str) -> bool:
        """Whether the blob exists and (decrypted, when encrypted) still hashes to its name."""
        path = self.path_of(sha256)
        if not path.is_file():
            return False
        digest = _HashWriter()
        if self.encrypted(sha256):
            from bastion.governance.crypto import DecryptionError, decrypt_stream

            if self.kek is None:
                raise DataError(
                    f"blob {sha256} is encrypted: set BASTION_STORE_KEK to the store's key"
                )
            try:
                with open(path, "rb") as fh:
                    decrypt_stream(fh, digest, self.kek, name=str(path))
            except DecryptionError:
                return False
        else:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    digest.write(chunk)
        return digest.hexdigest() == sha256

    def copy_out(self, sha256: str, dest: str | os.PathLike[str]) -> None:
        """Write the blob's plaintext to ``dest`` (verified first)."""
        if not self.verify(sha256):
            raise DataError(f"blob {sha256} is missing or corrupt in {self.root}")
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        if self.encrypted(sha256):
            from bastion.governance.crypto import decrypt_file

            if self.kek is None:  # pragma: no cover - verify() refused it already
                raise DataError(f"blob {sha256} is encrypted and no key was given")
            decrypt_file(self.path_of(sha256), dest, self.kek)
        else:
            shutil.copyfile(self.path_of(sha256), dest)


class _HashWriter:
    """A write-only sink that hashes what it is given."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        self._digest.update(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
