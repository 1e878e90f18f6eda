"""Encryption at rest: AES-256-GCM envelope encryption of data and model files, streamed.

What it does. Each file gets a fresh random 256-bit *data key*; the data key is wrapped
(AES key wrap, RFC 3394 / NIST SP 800-38F) by a *key-encryption key* (KEK) that the user keeps
in a key file or an environment variable. The file is encrypted in chunks (1 MiB by default)
with AES-256-GCM, so memory stays flat on multi-gigabyte files, and the chunks form a STREAM
(Hoang, Reyhanitabar, Rogaway and Vizár, "Online authenticated-encryption and its
nonce-reuse misuse-resistance", CRYPTO 2015): each chunk's nonce holds its index and its
associated data says whether it is the final one, so a truncated, reordered, duplicated or
extended file fails to decrypt, as does any flipped byte anywhere.

Why. Training data and model weights are assets (OWASP ML05 model theft; MITRE ATLAS
AML.T0024 exfiltration). Envelope encryption lets the KEK rotate without re-encrypting
gigabytes: :func:`rewrap` rewrites only the file's header.

File format, version 1 (integers big-endian)::

    offset  size  field
    0       8     magic          b"BASTENC1"
    8       1     version        1
    9       4     chunk_size     plaintext bytes per chunk, 16 .. 64 MiB
    13      4     nonce_prefix   random, per file
    17      8     kek_id         sha256(KEK)[:8]: a wrong key is named as such
    25      40    wrapped_key    AES-KW(KEK, data key) (32-byte key + 8-byte integrity block)
    65      32    header_tag     HMAC-SHA256(header key, bytes 0 .. 64)
    97            chunks         chunk_0 || chunk_1 || ... || chunk_{n-1}

    chunk_i   = AES-256-GCM(chunk key, nonce_i, plaintext_i, aad_i): ciphertext || 16-byte tag
    nonce_i   = nonce_prefix || uint64(i)                                   (12 bytes)
    aad_i     = sha256(bytes 0 .. 16 of the header) || uint64(i) || last_i  (41 bytes)
    last_i    = 1 for the final chunk, else 0
    chunk key = HKDF-Expand-SHA256(data key, "BASTENC1 chunk key", 32)
    header key= HKDF-Expand-SHA256(data key, "BASTENC1 header key", 32)

Every chunk holds ``chunk_size`` plaintext bytes except the final one, which holds 0 ..
``chunk_size`` (an empty file is one empty final chunk), so a file of n plaintext bytes
encrypts to ``97 + n + 16 * max(1, ceil(n / chunk_size))`` bytes. The chunks bind only the
fixed part of the header (bytes 0 .. 16), not the key slot (``kek_id``, ``wrapped_key``),
so that :func:`rewrap` can replace the key slot and re-sign the header without touching the
chunks. The header tag covers the whole header, key slot included.

Decryption checks, in order: the magic and version; the key id (:class:`WrongKeyError`);
the key wrap's integrity block; the header tag; then each chunk as it is read. Every failure
raises :class:`DecryptionError` (a :class:`~bastion.exceptions.DataError`) naming the file and,
for chunks, the chunk's index. :func:`decrypt_file` writes to a temporary file beside the
destination and renames it into place only after the final chunk verified, so no
unauthenticated plaintext is ever left behind. :func:`decrypt_stream` writes each chunk as
soon as that chunk verified: a caller that streams to its own sink must discard the output
when it raises (truncation is only known at the end).

Keys. A KEK is 32 random bytes (:func:`generate_kek`), stored raw (exactly 32 bytes) or in
base64 (44 characters, e.g. the output of ``openssl rand -base64 32``) in a key file, or in
base64 in an environment variable (:func:`load_kek`). :func:`write_kek` creates a key file
readable by its owner only. Lose the KEK and the files are lost.

Example::

    from bastion.governance.crypto import decrypt_file, encrypt_file, generate_kek, rewrap

    kek = generate_kek()
    encrypt_file("model.onnx", "model.onnx.enc", kek)
    decrypt_file("model.onnx.enc", "restored.onnx", kek)
    new_kek = generate_kek()
    rewrap("model.onnx.enc", kek, new_kek)  # rewrites the 97-byte header only
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from bastion._atomic import atomic_write
from bastion.exceptions import ConfigError, DataError, DecryptionError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "HEADER_SIZE",
    "KEK_SIZE",
    "MAGIC",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "CryptoResult",
    "DecryptionError",
    "EncryptedHeader",
    "RewrapResult",
    "WrongKeyError",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_file",
    "encrypt_stream",
    "encrypted_size",
    "generate_kek",
    "is_encrypted",
    "kek_id",
    "load_kek",
    "read_header",
    "rewrap",
    "write_kek",
]

MAGIC = b"BASTENC1"
FORMAT_VERSION = 1
KEK_SIZE = 32
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 1 << 26
TAG_SIZE = 16
_DATA_KEY_SIZE = 32
_PREFIX_SIZE = 4
_KEK_ID_SIZE = 8
_WRAPPED_SIZE = _DATA_KEY_SIZE + 8
_HEADER_TAG_SIZE = 32
_FIXED = struct.Struct(">8sBI4s")  # magic, version, chunk_size, nonce_prefix
_HEADER = struct.Struct(f">8sBI4s{_KEK_ID_SIZE}s{_WRAPPED_SIZE}s{_HEADER_TAG_SIZE}s")
HEADER_SIZE = _HEADER.size  # 97
_CHUNK_LABEL = b"BASTENC1 chunk key"
_HEADER_LABEL = b"BASTENC1 header key"
_KEY_FILE_LIMIT = 1024  # a key file is 32 or 44-odd bytes; refuse to slurp anything big
# recent cryptography releases write into caller buffers; older ones allocate (same bytes)
_HAS_INTO = hasattr(AESGCM, "encrypt_into")

# Messages, kept here so that tests assert them and users can search for them.
MSG_NOT_ENCRYPTED = "not a Bastion encrypted file (it does not start with BASTENC1)"
MSG_HEADER_TRUNCATED = "truncated header: {size} of {expected} bytes"
MSG_VERSION = "unsupported format version {version} (this Bastion reads version {supported})"
MSG_WRONG_KEY = (
    "wrong key: the file was encrypted under key id {want}, the key given has id {got}"
    " (or the header's key id is corrupted)"
)
MSG_WRAPPED_KEY = "the wrapped data key failed its integrity check: the header is corrupted"
MSG_HEADER_TAG = "the header failed authentication: it is corrupted or was tampered with"
MSG_CHUNK_SIZE = "invalid chunk size {size} (allowed: {low} to {high} bytes)"
MSG_NO_CHUNKS = "truncated: the file ends after its header, with no chunks"
MSG_SHORT_CHUNK = "truncated: the chunk has {size} bytes, fewer than its 16-byte tag"
MSG_TRUNCATED = "truncated: the file ends after this chunk, but it is not the final chunk"
MSG_APPENDED = "unexpected data after the final chunk (appended or duplicated data)"
MSG_CHUNK_TAG = (
    "the chunk failed authentication: it is corrupted, tampered with, truncated, extended,"
    " duplicated or out of order"
)


class WrongKeyError(DecryptionError):
    """The key given is not the key the file was encrypted under (its key id differs)."""


@dataclass(frozen=True)
class EncryptedHeader:
    """The header of an encrypted file, parsed but not verified (no key needed)."""

    version: int
    chunk_size: int
    nonce_prefix: bytes
    kek_id: str  # hex: 16 characters
    wrapped_key: bytes
    tag: bytes


@dataclass(frozen=True)
class CryptoResult:
    """What an encryption or decryption did: sizes in bytes, chunks, and the KEK's id."""

    plaintext_bytes: int
    ciphertext_bytes: int  # header included
    chunks: int
    chunk_size: int
    kek_id: str


@dataclass(frozen=True)
class RewrapResult:
    """A re-wrapped file: its path and the ids of the old and new KEKs."""

    path: str
    old_kek_id: str
    new_kek_id: str


class _Reader(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class _Writer(Protocol):
    def write(self, data: memoryview | bytes, /) -> int | None: ...


_T = TypeVar("_T")
StrPath = str | os.PathLike[str]


# ---------------------------------------------------------------------------- keys


def generate_kek() -> bytes:
    """Return a new key-encryption key: 32 bytes from the operating system's CSPRNG.

    Example:
        >>> len(generate_kek())
        32
    """
    return secrets.token_bytes(KEK_SIZE)


def kek_id(kek: bytes) -> str:
    """The key's id as written in headers: hex of the first 8 bytes of ``sha256(kek)``.

    Raises:
        ConfigError: ``kek`` is not 32 bytes.
    """
    _check_kek(kek)
    return _kek_id_bytes(kek).hex()


def write_kek(path: StrPath, kek: bytes | None = None) -> bytes:
    """Write a KEK (a new one unless given) to ``path`` in base64, readable by its owner only.

    The file is created exclusively: an existing file is never overwritten, because
    overwriting a key file loses every file encrypted under the old key.

    Parameters:
        path: the key file to create.
        kek: the key to store; default: :func:`generate_kek`.

    Returns:
        The key written.

    Raises:
        ConfigError: ``path`` exists, its folder cannot be written, or ``kek`` is not 32 bytes.

    Example:
        >>> kek = write_kek("bastion.kek")  # doctest: +SKIP
    """
    kek = generate_kek() if kek is None else kek
    _check_kek(kek)
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"key file {target} already exists; refusing to overwrite a key (move it away first)"
        ) from None
    except OSError as err:
        raise ConfigError(f"key file {target}: cannot create it: {err.strerror}") from err
    with os.fdopen(fd, "wb") as out:
        out.write(base64.b64encode(kek) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    return kek


def load_kek(*, key_file: StrPath | None = None, key_env: str | None = None) -> bytes:
    """Read a KEK from a key file or from an environment variable (give exactly one).

    A key file holds the 32 raw bytes, or their base64 (surrounding whitespace is ignored);
    an environment variable holds the base64.

    Parameters:
        key_file: path of the key file.
        key_env: name of the environment variable.

    Returns:
        The 32-byte key.

    Raises:
        ConfigError: neither or both sources given, the file or variable is missing, or it
            does not hold a 32-byte key. Messages never include key material.

    Example:
        >>> kek = load_kek(key_env="BASTION_KEK")  # doctest: +SKIP
    """
    if key_file is not None and key_env is None:
        return _kek_from_file(key_file)
    if key_env is not None and key_file is None:
        return _kek_from_env(key_env)
    raise ConfigError("give exactly one key source: a key file or an environment variable")


def _kek_from_file(key_file: StrPath) -> bytes:
    source = f"key file {os.fspath(key_file)}"
    try:
        with open(key_file, "rb") as f:
            data = f.read(_KEY_FILE_LIMIT + 1)
    except OSError as err:
        raise ConfigError(f"{source}: cannot read it: {err.strerror}") from err
    if len(data) == KEK_SIZE:
        return data
    if len(data) > _KEY_FILE_LIMIT:
        raise ConfigError(f"{source}: more than {_KEY_FILE_LIMIT} bytes: not a key file")
    return _decode_kek(data, source)


def _kek_from_env(key_env: str) -> bytes:
    source = f"environment variable {key_env}"
    value = os.environ.get(key_env)
    if value is None:
        raise ConfigError(f"{source} is not set")
    return _decode_kek(value.encode("utf-8", "replace"), source)


def _decode_kek(data: bytes, source: str) -> bytes:
    text = data.strip()
    try:
        kek = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{source}: expected {KEK_SIZE} raw bytes or their base64 (44 characters), got "
            f"{len(data)} bytes that are not base64"
        ) from None
    if len(kek) != KEK_SIZE:
        raise ConfigError(
            f"{source}: expected a {KEK_SIZE}-byte key, got {len(kek)} bytes after base64 decoding"
        )
    return kek


def _check_kek(kek: bytes) -> None:
    if not isinstance(kek, bytes | bytearray) or len(kek) != KEK_SIZE:
        size = len(kek) if isinstance(kek, bytes | bytearray) else type(kek).__name__
        raise ConfigError(f"kek: expected {KEK_SIZE} bytes, got {size}")


def _kek_id_bytes(kek: bytes) -> bytes:
    return hashlib.sha256(kek).digest()[:_KEK_ID_SIZE]


def _check_chunk_size(chunk_size: int) -> None:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ConfigError(
            "chunk_size: "
            + MSG_CHUNK_SIZE.format(size=chunk_size, low=MIN_CHUNK_SIZE, high=MAX_CHUNK_SIZE)
        )


# ---------------------------------------------------------------------------- header


def _subkey(data_key: bytes, label: bytes) -> bytes:
    # the data key is uniformly random, so HKDF's extract step adds nothing (RFC 5869 §3.3)
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=label).derive(data_key)


def _seal_header(fixed: bytes, kek: bytes, data_key: bytes) -> bytes:
    body = fixed + _kek_id_bytes(kek) + aes_key_wrap(kek, data_key)
    tag = hmac.new(_subkey(data_key, _HEADER_LABEL), body, hashlib.sha256).digest()
    return body + tag


def _parse_header(raw: bytes, name: str) -> EncryptedHeader:
    if len(raw) < len(MAGIC) or raw[: len(MAGIC)] != MAGIC:
        raise DecryptionError(name, MSG_NOT_ENCRYPTED)
    if len(raw) > len(MAGIC) and raw[len(MAGIC)] != FORMAT_VERSION:
        version = raw[len(MAGIC)]
        raise DecryptionError(name, MSG_VERSION.format(version=version, supported=FORMAT_VERSION))
    if len(raw) < HEADER_SIZE:
        raise DecryptionError(
            name, MSG_HEADER_TRUNCATED.format(size=len(raw), expected=HEADER_SIZE)
        )
    _, version, chunk_size, prefix, kid, wrapped, tag = _HEADER.unpack(raw[:HEADER_SIZE])
    return EncryptedHeader(version, chunk_size, prefix, kid.hex(), wrapped, tag)


def _unlock(header: EncryptedHeader, raw: bytes, kek: bytes, name: str) -> bytes:
    """Check the key id, unwrap the data key and verify the header tag; return the data key."""
    got = _kek_id_bytes(kek).hex()
    if not hmac.compare_digest(header.kek_id, got):
        raise WrongKeyError(name, MSG_WRONG_KEY.format(want=header.kek_id, got=got))
    try:
        data_key = aes_key_unwrap(kek, header.wrapped_key)
    except InvalidUnwrap:
        raise DecryptionError(name, MSG_WRAPPED_KEY) from None
    body = raw[: HEADER_SIZE - _HEADER_TAG_SIZE]
    expected = hmac.new(_subkey(data_key, _HEADER_LABEL), body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, header.tag):
        raise DecryptionError(name, MSG_HEADER_TAG)
    # only a header forged with the key gets here with a bad size; still refuse it
    if not MIN_CHUNK_SIZE <= header.chunk_size <= MAX_CHUNK_SIZE:
        raise DecryptionError(
            name,
            MSG_CHUNK_SIZE.format(size=header.chunk_size, low=MIN_CHUNK_SIZE, high=MAX_CHUNK_SIZE),
        )
    return data_key


def _fixed_part(raw: bytes) -> bytes:
    return raw[: _FIXED.size]


# ---------------------------------------------------------------------------- chunks


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(8, "big")


def _aad(header_hash: bytes, index: int, last: bool) -> bytes:
    return header_hash + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


def _seal(aead: AESGCM, nonce: bytes, data: memoryview, aad: bytes, out: memoryview) -> None:
    if _HAS_INTO:
        aead.encrypt_into(nonce, data, aad, out)
    else:  # pragma: no cover - cryptography without encrypt_into/decrypt_into
        out[:] = aead.encrypt(nonce, data, aad)


def _open(aead: AESGCM, nonce: bytes, data: memoryview, aad: bytes, out: memoryview) -> None:
    if _HAS_INTO:
        aead.decrypt_into(nonce, data, aad, out)
    else:  # pragma: no cover - cryptography without encrypt_into/decrypt_into
        out[:] = aead.decrypt(nonce, data, aad)


def _opens(aead: AESGCM, nonce: bytes, data: memoryview, aad: bytes, out: memoryview) -> bool:
    try:
        _open(aead, nonce, data, aad, out)
    except InvalidTag:
        return False
    return True


def _read_full(src: _Reader, buf: memoryview) -> int:
    """Fill ``buf`` unless the stream ends first; return the bytes read (short reads retried)."""
    got = 0
    while got < len(buf):
        n = src.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def _write_all(dst: _Writer, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        n = dst.write(view)
        if n is None:  # a non-blocking raw stream that would block: nothing written
            raise DataError("the output stream is non-blocking; give a blocking file object")
        view = view[n:]


def encrypted_size(plaintext_bytes: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Size in bytes of the encryption of ``plaintext_bytes`` bytes (header included)."""
    chunks = max(1, -(-plaintext_bytes // chunk_size))
    return HEADER_SIZE + plaintext_bytes + TAG_SIZE * chunks


def encrypt_stream(
    src: _Reader,
    dst: _Writer,
    kek: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> CryptoResult:
    """Encrypt the binary stream ``src`` into ``dst`` under a fresh data key wrapped by ``kek``.

    Reads and writes one chunk at a time: memory is about three chunks whatever the size.

    Parameters:
        src: a blocking binary file object to read (it needs ``readinto``).
        dst: a binary file object to write.
        kek: the 32-byte key-encryption key.
        chunk_size: plaintext bytes per chunk (16 bytes to 64 MiB; default 1 MiB).

    Returns:
        The sizes, chunk count and key id.

    Raises:
        ConfigError: ``kek`` is not 32 bytes or ``chunk_size`` is out of range.

    Example:
        >>> import io
        >>> out = io.BytesIO()
        >>> encrypt_stream(io.BytesIO(b"hello"), out, generate_kek()).chunks
        1
    """
    _check_kek(kek)
    _check_chunk_size(chunk_size)
    data_key = secrets.token_bytes(_DATA_KEY_SIZE)
    prefix = secrets.token_bytes(_PREFIX_SIZE)
    fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, chunk_size, prefix)
    header = _seal_header(fixed, kek, data_key)
    _write_all(dst, header)
    aead = AESGCM(_subkey(data_key, _CHUNK_LABEL))
    header_hash = hashlib.sha256(fixed).digest()

    # read one chunk ahead: a chunk is the final one exactly when nothing follows it
    cur, nxt = memoryview(bytearray(chunk_size)), memoryview(bytearray(chunk_size))
    out = memoryview(bytearray(chunk_size + TAG_SIZE))
    n = _read_full(src, cur)
    index = total = 0
    while True:
        m = _read_full(src, nxt) if n == chunk_size else 0
        last = m == 0
        sealed = out[: n + TAG_SIZE]
        _seal(aead, _nonce(prefix, index), cur[:n], _aad(header_hash, index, last), sealed)
        _write_all(dst, sealed)
        total += n
        if last:
            break
        cur, nxt, n = nxt, cur, m
        index += 1
    chunks = index + 1
    return CryptoResult(
        plaintext_bytes=total,
        ciphertext_bytes=HEADER_SIZE + total + TAG_SIZE * chunks,
        chunks=chunks,
        chunk_size=chunk_size,
        kek_id=_kek_id_bytes(kek).hex(),
    )


def decrypt_stream(
    src: _Reader, dst: _Writer, kek: bytes, *, name: str = "<stream>"
) -> CryptoResult:
    """Decrypt the binary stream ``src`` into ``dst``, verifying every chunk before writing it.

    A chunk reaches ``dst`` only after its tag verified, but truncation of the stream is only
    known at its end: if this raises, discard what was written (:func:`decrypt_file` does).

    Parameters:
        src: a blocking binary file object positioned at the header.
        dst: a binary file object to write the plaintext to.
        kek: the 32-byte key-encryption key.
        name: what error messages call the stream (a path).

    Returns:
        The sizes, chunk count and key id.

    Raises:
        WrongKeyError: ``kek`` is not the key the stream was encrypted under.
        DecryptionError: the stream is not encrypted, or is corrupted, truncated, reordered or
            extended; the message names the chunk.
        ConfigError: ``kek`` is not 32 bytes.
    """
    _check_kek(kek)
    raw = bytearray(HEADER_SIZE)
    got = _read_full(src, memoryview(raw))
    header = _parse_header(bytes(raw[:got]), name)
    data_key = _unlock(header, bytes(raw), kek, name)
    aead = AESGCM(_subkey(data_key, _CHUNK_LABEL))
    header_hash = hashlib.sha256(_fixed_part(bytes(raw))).digest()
    prefix, chunk_size = header.nonce_prefix, header.chunk_size

    block = chunk_size + TAG_SIZE
    cur, nxt = memoryview(bytearray(block)), memoryview(bytearray(block))
    plain = memoryview(bytearray(chunk_size))
    n = _read_full(src, cur)
    index = total = 0
    while True:
        m = _read_full(src, nxt) if n == block else 0
        last = m == 0
        if n == 0:
            raise DecryptionError(name, MSG_NO_CHUNKS, chunk=index)
        if n < TAG_SIZE:
            raise DecryptionError(name, MSG_SHORT_CHUNK.format(size=n), chunk=index)
        size = n - TAG_SIZE
        nonce = _nonce(prefix, index)
        try:
            _open(aead, nonce, cur[:n], _aad(header_hash, index, last), plain[:size])
        except InvalidTag:
            # the chunk may be intact but in the wrong place at the end: say which
            flipped = _aad(header_hash, index, not last)
            intact = _opens(aead, nonce, cur[:n], flipped, plain[:size])
            message = (MSG_TRUNCATED if last else MSG_APPENDED) if intact else MSG_CHUNK_TAG
            raise DecryptionError(name, message, chunk=index) from None
        _write_all(dst, plain[:size])
        total += size
        if last:
            break
        cur, nxt, n = nxt, cur, m
        index += 1
    chunks = index + 1
    return CryptoResult(
        plaintext_bytes=total,
        ciphertext_bytes=HEADER_SIZE + total + TAG_SIZE * chunks,
        chunks=chunks,
        chunk_size=chunk_size,
        kek_id=header.kek_id,
    )


# ---------------------------------------------------------------------------- files


def _prepare(src: StrPath, dst: StrPath, overwrite: bool) -> tuple[Path, Path]:
    source, target = Path(src), Path(dst)
    if not source.is_file():
        raise ConfigError(f"no such file: {source}")
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists; pass overwrite=True (--force) to replace it")
    return source, target


def encrypt_file(
    src: StrPath,
    dst: StrPath,
    kek: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overwrite: bool = False,
) -> CryptoResult:
    """Encrypt the file ``src`` to ``dst`` (written atomically: complete or absent).

    ``src`` is left as it is; encrypting in place (``dst == src``) needs ``overwrite=True``.
    The new file is readable by its owner only.

    Parameters:
        src: the plaintext file.
        dst: the encrypted file to write.
        kek: the 32-byte key-encryption key.
        chunk_size: plaintext bytes per chunk (16 bytes to 64 MiB; default 1 MiB).
        overwrite: replace ``dst`` if it exists.

    Returns:
        The sizes, chunk count and key id.

    Raises:
        ConfigError: ``src`` is missing, ``dst`` exists, or a bad ``kek`` or ``chunk_size``.
        DataError: reading or writing failed (the message names the path).

    Example:
        >>> encrypt_file("train.csv", "train.csv.enc", kek)  # doctest: +SKIP
    """
    _check_kek(kek)
    _check_chunk_size(chunk_size)
    source, target = _prepare(src, dst, overwrite)
    try:
        with source.open("rb") as fin:
            return atomic_write(
                target, lambda out: encrypt_stream(fin, out, kek, chunk_size=chunk_size)
            )
    except OSError as err:
        raise DataError(f"encrypting {source} to {target}: {err.strerror or err}") from err


def decrypt_file(
    src: StrPath, dst: StrPath, kek: bytes, *, overwrite: bool = False
) -> CryptoResult:
    """Decrypt ``src`` to ``dst``; ``dst`` appears only once every chunk has verified.

    The plaintext goes to a temporary file in ``dst``'s folder (readable by its owner only),
    which is renamed to ``dst`` after the final chunk verified and removed on any failure.

    Parameters:
        src: the encrypted file.
        dst: the plaintext file to write.
        kek: the 32-byte key-encryption key.
        overwrite: replace ``dst`` if it exists.

    Returns:
        The sizes, chunk count and key id.

    Raises:
        WrongKeyError: ``kek`` is not the key ``src`` was encrypted under.
        DecryptionError: ``src`` is not encrypted, or corrupted, truncated or tampered with.
        ConfigError: ``src`` is missing, ``dst`` exists, or ``kek`` is not 32 bytes.
        DataError: reading or writing failed.

    Example:
        >>> decrypt_file("train.csv.enc", "train.csv", kek)  # doctest: +SKIP
    """
    _check_kek(kek)
    source, target = _prepare(src, dst, overwrite)
    try:
        with source.open("rb") as fin:
            return atomic_write(target, lambda out: decrypt_stream(fin, out, kek, name=str(source)))
    except OSError as err:
        raise DataError(f"decrypting {source} to {target}: {err.strerror or err}") from err


def is_encrypted(path: StrPath) -> bool:
    """Whether ``path`` starts with the magic bytes of a Bastion encrypted file.

    Only the magic is checked: :func:`read_header` parses the header, decryption verifies it.

    Raises:
        DataError: ``path`` cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError as err:
        raise DataError(f"{os.fspath(path)}: cannot read it: {err.strerror}") from err


def read_header(path: StrPath) -> EncryptedHeader:
    """Parse the header of an encrypted file without a key (nothing is verified).

    Raises:
        DecryptionError: not an encrypted file, an unsupported version or a truncated header.
        DataError: ``path`` cannot be read.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_SIZE)
    except OSError as err:
        raise DataError(f"{os.fspath(path)}: cannot read it: {err.strerror}") from err
    return _parse_header(raw, os.fspath(path))


def rewrap(path: StrPath, old_kek: bytes, new_kek: bytes) -> RewrapResult:
    """Re-wrap the file's data key under ``new_kek``; the chunks are not read or rewritten.

    The header is verified with ``old_kek`` first (key id, key wrap, header tag), then the
    new 97-byte header is written over the old one in a single write at offset 0 and synced.
    That write lies inside the first 512-byte sector, which storage devices write
    atomically; a file system that does not keep sector writes atomic could tear it on a
    power cut (then neither key opens the file): keep backups, as for any key rotation.

    Parameters:
        path: the encrypted file (rewritten in place).
        old_kek: the key it is encrypted under now.
        new_kek: the key to encrypt its data key under.

    Returns:
        The path and both key ids.

    Raises:
        WrongKeyError: ``old_kek`` is not the file's key (the file is left unchanged).
        DecryptionError: the header is corrupted (the file is left unchanged).
        ConfigError: a key is not 32 bytes.
        DataError: the file cannot be read or written.

    Example:
        >>> rewrap("model.onnx.enc", old, new)  # doctest: +SKIP
    """
    _check_kek(old_kek)
    _check_kek(new_kek)
    name = os.fspath(path)
    try:
        with open(path, "r+b") as f:
            raw = f.read(HEADER_SIZE)
            header = _parse_header(raw, name)
            data_key = _unlock(header, raw, old_kek, name)
            new = _seal_header(_fixed_part(raw), new_kek, data_key)
            f.seek(0)
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise DataError(f"{name}: cannot rewrap it: {err.strerror or err}") from err
    return RewrapResult(path=name, old_kek_id=header.kek_id, new_kek_id=kek_id(new_kek))
