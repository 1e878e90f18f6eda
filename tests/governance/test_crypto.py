"""Encryption at rest: round trips, the documented format, and every way a file can be broken
(wrong key, flipped byte, truncation, reordering, duplication, appended data) failing loudly
without leaving plaintext behind; key rotation; flat memory; the CLI commands."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import random
import stat
import tracemalloc
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from bastion.cli import main as cli_main
from bastion.cli.crypto import decrypt_command, encrypt_command, rewrap_command
from bastion.exceptions import ConfigError, DataError
from bastion.governance.crypto import (
    DEFAULT_CHUNK_SIZE,
    HEADER_SIZE,
    MAGIC,
    MSG_CHUNK_TAG,
    MSG_HEADER_TAG,
    MSG_NO_CHUNKS,
    MSG_NOT_ENCRYPTED,
    MSG_TRUNCATED,
    MSG_WRAPPED_KEY,
    DecryptionError,
    WrongKeyError,
    decrypt_file,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
    encrypted_size,
    generate_kek,
    is_encrypted,
    kek_id,
    load_kek,
    read_header,
    rewrap,
    write_kek,
)

CHUNK = 16  # small chunks: many of them in a few bytes
TAG = 16


def data(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def kek() -> bytes:
    return bytes(range(32))


@pytest.fixture
def sealed(tmp_path: Path, kek: bytes) -> tuple[Path, bytes]:
    """A file of 3 chunks (16 + 16 + 8 plaintext bytes) and its plaintext."""
    plain = data(40)
    src = tmp_path / "plain.bin"
    src.write_bytes(plain)
    enc = tmp_path / "plain.bin.enc"
    encrypt_file(src, enc, kek, chunk_size=CHUNK)
    return enc, plain


def chunk_start(i: int) -> int:
    return HEADER_SIZE + i * (CHUNK + TAG)


def decrypt_bytes(blob: bytes, kek: bytes, folder: Path) -> bytes:
    """Decrypt ``blob`` through the file API; on failure assert nothing was left behind."""
    folder.mkdir(exist_ok=True)
    src, dst = folder / "in.enc", folder / "out.bin"
    src.write_bytes(blob)
    try:
        decrypt_file(src, dst, kek, overwrite=True)
    except DecryptionError:
        assert not dst.exists()
        assert sorted(p.name for p in folder.iterdir()) == ["in.enc"]  # no temp file
        raise
    return dst.read_bytes()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ round trips and format


@pytest.mark.parametrize(
    ("size", "chunks"),
    [(0, 1), (1, 1), (CHUNK, 1), (CHUNK + 1, 2), (3 * CHUNK, 3), (1000, 63)],
    ids=["empty", "one-byte", "one-chunk", "chunk-plus-one", "three-exact", "many"],
)
def test_round_trip(tmp_path: Path, kek: bytes, size: int, chunks: int) -> None:
    plain = data(size, seed=size)
    src, enc, out = tmp_path / "a", tmp_path / "a.enc", tmp_path / "a.out"
    src.write_bytes(plain)
    done = encrypt_file(src, enc, kek, chunk_size=CHUNK)
    assert done.chunks == chunks
    assert enc.stat().st_size == done.ciphertext_bytes == encrypted_size(size, CHUNK)
    assert enc.stat().st_size == HEADER_SIZE + size + TAG * chunks
    back = decrypt_file(enc, out, kek)
    assert out.read_bytes() == plain
    assert (back.plaintext_bytes, back.chunks, back.kek_id) == (size, chunks, kek_id(kek))
    if size >= CHUNK:  # shorter strings turn up in random bytes by chance
        assert plain not in enc.read_bytes()


def test_round_trip_default_chunk_size_and_streams(kek: bytes) -> None:
    plain = data(DEFAULT_CHUNK_SIZE * 2 + 5)
    blob = io.BytesIO()
    done = encrypt_stream(io.BytesIO(plain), blob, kek)
    assert (done.chunks, done.chunk_size) == (3, DEFAULT_CHUNK_SIZE)
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob.getvalue()), out, kek)
    assert out.getvalue() == plain


def test_each_encryption_uses_a_fresh_data_key_and_nonce_prefix(kek: bytes) -> None:
    a, b = io.BytesIO(), io.BytesIO()
    encrypt_stream(io.BytesIO(b"same"), a, kek)
    encrypt_stream(io.BytesIO(b"same"), b, kek)
    assert a.getvalue()[13:17] != b.getvalue()[13:17]  # nonce prefix
    assert a.getvalue()[25:65] != b.getvalue()[25:65]  # wrapped data key
    assert a.getvalue()[HEADER_SIZE:] != b.getvalue()[HEADER_SIZE:]


def test_the_documented_format_decrypts_with_plain_cryptography(
    sealed: tuple[Path, bytes], kek: bytes
) -> None:
    """An independent reader built from the module docstring's table recovers the plaintext."""
    enc, plain = sealed
    blob = enc.read_bytes()
    assert blob[:8] == MAGIC == b"BASTENC1"
    assert blob[8] == 1
    assert int.from_bytes(blob[9:13], "big") == CHUNK
    prefix = blob[13:17]
    assert blob[17:25] == hashlib.sha256(kek).digest()[:8]
    data_key = aes_key_unwrap(kek, blob[25:65])
    header_key = HKDFExpand(hashes.SHA256(), 32, b"BASTENC1 header key").derive(data_key)
    assert hmac.new(header_key, blob[:65], hashlib.sha256).digest() == blob[65:97]
    chunk_key = HKDFExpand(hashes.SHA256(), 32, b"BASTENC1 chunk key").derive(data_key)
    aead, header_hash = AESGCM(chunk_key), hashlib.sha256(blob[:17]).digest()
    out = b""
    for i, start in enumerate(range(HEADER_SIZE, len(blob), CHUNK + TAG)):
        last = start + CHUNK + TAG >= len(blob)
        nonce = prefix + i.to_bytes(8, "big")
        aad = header_hash + i.to_bytes(8, "big") + (b"\x01" if last else b"\x00")
        out += aead.decrypt(nonce, blob[start : start + CHUNK + TAG], aad)
    assert out == plain
    header = read_header(enc)
    assert (header.version, header.chunk_size, header.kek_id) == (1, CHUNK, kek_id(kek))
    assert header.nonce_prefix == prefix


def test_is_encrypted(sealed: tuple[Path, bytes], tmp_path: Path) -> None:
    enc, _ = sealed
    plain = tmp_path / "p.txt"
    plain.write_bytes(b"BASTENC")  # shorter than the magic
    assert is_encrypted(enc)
    assert not is_encrypted(plain)
    with pytest.raises(DataError, match="cannot read"):
        is_encrypted(tmp_path / "missing")


# ------------------------------------------------------------------ tampering


def test_wrong_key_is_named_and_leaves_nothing(sealed: tuple[Path, bytes], tmp_path: Path) -> None:
    enc, _ = sealed
    other = generate_kek()
    with pytest.raises(WrongKeyError, match="wrong key") as err:
        decrypt_bytes(enc.read_bytes(), other, tmp_path / "w")
    assert read_header(enc).kek_id in str(err.value)
    assert kek_id(other) in str(err.value)
    assert str(tmp_path / "w" / "in.enc") in str(err.value)


def test_every_flipped_byte_is_detected(
    sealed: tuple[Path, bytes], kek: bytes, tmp_path: Path
) -> None:
    enc, _ = sealed
    blob = enc.read_bytes()
    for offset in range(len(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[offset] ^= bit
            with pytest.raises(DecryptionError):
                decrypt_stream(io.BytesIO(bad), io.BytesIO(), kek)
    # the file API on a few of them: nothing is left behind (each region: see below)
    for offset in (0, 20, 40, 90, chunk_start(1) + 5, len(blob) - 1):
        bad = bytearray(blob)
        bad[offset] ^= 0x01
        with pytest.raises(DecryptionError):
            decrypt_bytes(bytes(bad), kek, tmp_path / "f")


@pytest.mark.parametrize(
    ("offset", "error", "message", "chunk"),
    [
        (0, DecryptionError, MSG_NOT_ENCRYPTED, None),  # magic
        (8, DecryptionError, "unsupported format version 0", None),  # version
        (12, DecryptionError, MSG_HEADER_TAG, None),  # chunk size
        (14, DecryptionError, MSG_HEADER_TAG, None),  # nonce prefix
        (20, WrongKeyError, "wrong key", None),  # key id
        (30, DecryptionError, MSG_WRAPPED_KEY, None),  # wrapped data key
        (80, DecryptionError, MSG_HEADER_TAG, None),  # header tag
        (chunk_start(0) + 3, DecryptionError, MSG_CHUNK_TAG, 0),  # ciphertext
        (chunk_start(1) + CHUNK + 2, DecryptionError, MSG_CHUNK_TAG, 1),  # chunk tag
        (chunk_start(2) + 8 + 15, DecryptionError, MSG_CHUNK_TAG, 2),  # final chunk's tag
    ],
    ids=[
        "magic", "version", "chunk-size", "nonce-prefix", "key-id", "wrapped-key",
        "header-tag", "ciphertext", "chunk-tag", "last-tag",
    ],
)  # fmt: skip
def test_a_flipped_byte_names_its_region(
    sealed: tuple[Path, bytes],
    kek: bytes,
    tmp_path: Path,
    offset: int,
    error: type[DecryptionError],
    message: str,
    chunk: int | None,
) -> None:
    enc, _ = sealed
    bad = bytearray(enc.read_bytes())
    bad[offset] ^= 0x01  # the version byte becomes 0
    with pytest.raises(error) as err:
        decrypt_bytes(bytes(bad), kek, tmp_path / "r")
    assert message in str(err.value)
    assert err.value.chunk == chunk
    if chunk is not None:
        assert f"chunk {chunk}:" in str(err.value)


def test_every_truncation_is_detected(
    sealed: tuple[Path, bytes], kek: bytes, tmp_path: Path
) -> None:
    enc, _ = sealed
    blob = enc.read_bytes()
    for length in range(len(blob)):
        with pytest.raises(DecryptionError):
            decrypt_stream(io.BytesIO(blob[:length]), io.BytesIO(), kek)
    for length in (0, HEADER_SIZE, chunk_start(1), chunk_start(2) + 3, len(blob) - 1):
        with pytest.raises(DecryptionError):
            decrypt_bytes(blob[:length], kek, tmp_path / "t")


@pytest.mark.parametrize(
    ("length", "message", "chunk"),
    [
        (0, MSG_NOT_ENCRYPTED, None),
        (50, "truncated header: 50 of 97 bytes", None),
        (HEADER_SIZE, MSG_NO_CHUNKS, 0),
        (chunk_start(1), MSG_TRUNCATED, 0),  # at a chunk boundary
        (chunk_start(2), MSG_TRUNCATED, 1),  # the final chunk dropped
        (chunk_start(1) + 20, MSG_CHUNK_TAG, 1),  # mid-chunk
        (chunk_start(2) + 5, "fewer than its 16-byte tag", 2),
    ],
    ids=["empty", "mid-header", "no-chunks", "boundary-1", "last-dropped", "mid-chunk", "tiny"],
)
def test_truncation_messages(
    sealed: tuple[Path, bytes],
    kek: bytes,
    tmp_path: Path,
    length: int,
    message: str,
    chunk: int | None,
) -> None:
    enc, _ = sealed
    with pytest.raises(DecryptionError) as err:
        decrypt_bytes(enc.read_bytes()[:length], kek, tmp_path / "m")
    assert message in str(err.value)
    assert err.value.chunk == chunk


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[i : i + CHUNK + TAG] for i in range(0, len(body), 32)]


def test_swapped_and_duplicated_chunks(
    sealed: tuple[Path, bytes], kek: bytes, tmp_path: Path
) -> None:
    enc, _ = sealed
    header, chunks = split(enc.read_bytes())
    assert len(chunks) == 3
    swapped = header + chunks[1] + chunks[0] + chunks[2]
    with pytest.raises(DecryptionError, match=MSG_CHUNK_TAG) as err:
        decrypt_bytes(swapped, kek, tmp_path / "s")
    assert err.value.chunk == 0
    duplicated = header + chunks[0] + chunks[1] + chunks[1] + chunks[2]
    with pytest.raises(DecryptionError, match=MSG_CHUNK_TAG) as err:
        decrypt_bytes(duplicated, kek, tmp_path / "d")
    assert err.value.chunk == 2
    last_first = header + chunks[2]  # the final chunk moved to index 0
    with pytest.raises(DecryptionError) as err:
        decrypt_bytes(last_first, kek, tmp_path / "l")
    assert err.value.chunk == 0


def test_chunks_do_not_move_between_files(tmp_path: Path, kek: bytes) -> None:
    a, b = io.BytesIO(), io.BytesIO()
    encrypt_stream(io.BytesIO(data(40, 1)), a, kek, chunk_size=CHUNK)
    encrypt_stream(io.BytesIO(data(40, 2)), b, kek, chunk_size=CHUNK)
    header_a, chunks_a = split(a.getvalue())
    _, chunks_b = split(b.getvalue())
    with pytest.raises(DecryptionError) as err:
        decrypt_bytes(header_a + chunks_a[0] + chunks_b[1] + chunks_a[2], kek, tmp_path / "x")
    assert err.value.chunk == 1


def test_appended_data(tmp_path: Path, kek: bytes) -> None:
    full = io.BytesIO()  # the final chunk is full: appended bytes follow a final chunk
    encrypt_stream(io.BytesIO(data(2 * CHUNK)), full, kek, chunk_size=CHUNK)
    with pytest.raises(DecryptionError, match="appended") as err:
        decrypt_bytes(full.getvalue() + b"\x00", kek, tmp_path / "a")
    assert err.value.chunk == 1
    _, chunks = split(full.getvalue())
    with pytest.raises(DecryptionError, match="appended") as err:
        decrypt_bytes(full.getvalue() + chunks[1], kek, tmp_path / "b")  # final chunk twice
    partial = io.BytesIO()  # a short final chunk swallows the extra bytes: its tag fails
    encrypt_stream(io.BytesIO(data(40)), partial, kek, chunk_size=CHUNK)
    with pytest.raises(DecryptionError, match=MSG_CHUNK_TAG) as err:
        decrypt_bytes(partial.getvalue() + b"junk", kek, tmp_path / "c")
    assert err.value.chunk == 2


def test_a_failed_decryption_keeps_an_existing_destination(tmp_path: Path, kek: bytes) -> None:
    src, enc, dst = tmp_path / "p", tmp_path / "p.enc", tmp_path / "out.bin"
    src.write_bytes(data(10 * CHUNK))
    encrypt_file(src, enc, kek, chunk_size=CHUNK)
    bad = bytearray(enc.read_bytes())
    bad[chunk_start(7) + 1] ^= 0x40  # seven chunks verify and are written before this one
    enc.write_bytes(bytes(bad))
    dst.write_bytes(b"previous release")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DecryptionError) as err:
        decrypt_file(enc, dst, kek, overwrite=True)
    assert err.value.chunk == 7
    assert dst.read_bytes() == b"previous release"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_interrupted_write_leaves_no_temporary_file(
    tmp_path: Path, kek: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.governance import crypto

    src, enc, out = tmp_path / "p", tmp_path / "p.enc", tmp_path / "p.out"
    src.write_bytes(data(100))
    encrypt_file(src, enc, kek, chunk_size=CHUNK)

    def interrupted(*args: object, **kwargs: object) -> None:
        args[1].write(b"partial plaintext")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(crypto, "decrypt_stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        decrypt_file(enc, out, kek)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "p.enc"]


def test_existing_outputs_and_bad_arguments(tmp_path: Path, kek: bytes) -> None:
    src, enc = tmp_path / "p", tmp_path / "p.enc"
    src.write_bytes(b"x")
    encrypt_file(src, enc, kek)
    with pytest.raises(ConfigError, match="already exists"):
        encrypt_file(src, enc, kek)
    with pytest.raises(ConfigError, match="already exists"):
        decrypt_file(enc, src, kek)
    with pytest.raises(ConfigError, match="no such file"):
        encrypt_file(tmp_path / "missing", tmp_path / "m.enc", kek)
    for size in (0, 15, (1 << 26) + 1):
        with pytest.raises(ConfigError, match="chunk_size"):
            encrypt_file(src, tmp_path / "c.enc", kek, chunk_size=size)
    with pytest.raises(ConfigError, match="kek: expected 32 bytes, got 16"):
        encrypt_file(src, tmp_path / "k.enc", kek[:16])
    assert not (tmp_path / "c.enc").exists()
    assert not (tmp_path / "k.enc").exists()
    encrypt_file(src, src, kek, overwrite=True)  # in place: atomic, so the source is safe
    decrypt_file(src, src, kek, overwrite=True)
    assert src.read_bytes() == b"x"


# ------------------------------------------------------------------ keys and rotation


def test_rewrap_changes_only_the_key_slot(
    sealed: tuple[Path, bytes], kek: bytes, tmp_path: Path
) -> None:
    enc, plain = sealed
    before = enc.read_bytes()
    new = generate_kek()
    result = rewrap(enc, kek, new)
    after = enc.read_bytes()
    assert (result.old_kek_id, result.new_kek_id) == (kek_id(kek), kek_id(new))
    assert len(after) == len(before)
    assert after[:17] == before[:17]  # magic, version, chunk size, nonce prefix
    assert after[HEADER_SIZE:] == before[HEADER_SIZE:]  # the data was not re-encrypted
    assert after[17:HEADER_SIZE] != before[17:HEADER_SIZE]
    assert decrypt_bytes(after, new, tmp_path / "n") == plain
    with pytest.raises(WrongKeyError):
        decrypt_bytes(after, kek, tmp_path / "o")


def test_rewrap_refuses_a_wrong_key_or_a_bad_header_and_changes_nothing(
    sealed: tuple[Path, bytes], kek: bytes
) -> None:
    enc, _ = sealed
    before = enc.read_bytes()
    with pytest.raises(WrongKeyError):
        rewrap(enc, generate_kek(), generate_kek())
    assert enc.read_bytes() == before
    bad = bytearray(before)
    bad[70] ^= 1  # the header tag
    enc.write_bytes(bytes(bad))
    with pytest.raises(DecryptionError, match=MSG_HEADER_TAG):
        rewrap(enc, kek, generate_kek())
    assert enc.read_bytes() == bytes(bad)


def test_key_files_and_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "k.b64"
    kek = write_kek(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes() == base64.b64encode(kek) + b"\n"
    assert load_kek(key_file=key) == kek
    with pytest.raises(ConfigError, match="already exists"):
        write_kek(key)
    raw = tmp_path / "k.raw"
    raw.write_bytes(kek)
    assert load_kek(key_file=raw) == kek
    monkeypatch.setenv("TEST_KEK", "  " + base64.b64encode(kek).decode() + "\n")
    assert load_kek(key_env="TEST_KEK") == kek

    short = base64.b64encode(kek[:16]).decode()
    monkeypatch.setenv("TEST_KEK", short)
    with pytest.raises(ConfigError, match="TEST_KEK: expected a 32-byte key, got 16") as err:
        load_kek(key_env="TEST_KEK")
    assert short not in str(err.value)
    monkeypatch.setenv("TEST_KEK", "not base64 at all!")
    with pytest.raises(ConfigError, match="not base64") as err:
        load_kek(key_env="TEST_KEK")
    assert "at all" not in str(err.value)
    monkeypatch.delenv("TEST_KEK")
    with pytest.raises(ConfigError, match="TEST_KEK is not set"):
        load_kek(key_env="TEST_KEK")
    with pytest.raises(ConfigError, match="exactly one"):
        load_kek()
    with pytest.raises(ConfigError, match="exactly one"):
        load_kek(key_file=key, key_env="TEST_KEK")
    with pytest.raises(ConfigError, match="cannot read"):
        load_kek(key_file=tmp_path / "missing")
    big = tmp_path / "big"
    big.write_bytes(b"A" * 5000)
    with pytest.raises(ConfigError, match="not a key file"):
        load_kek(key_file=big)
    assert kek_id(kek) == hashlib.sha256(kek).hexdigest()[:16]


# ------------------------------------------------------------------ memory


def test_memory_stays_flat_on_a_64_mb_file(tmp_path: Path, kek: bytes) -> None:
    src, enc, out = tmp_path / "big", tmp_path / "big.enc", tmp_path / "big.out"
    rng = random.Random(7)
    with src.open("wb") as f:
        for _ in range(64):
            f.write(rng.randbytes(1 << 20))
    limit = 4 * DEFAULT_CHUNK_SIZE  # three chunk buffers and change, against 64 MiB of data
    tracemalloc.start()
    try:
        encrypt_file(src, enc, kek)
        _, peak_encrypt = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        decrypt_file(enc, out, kek)
        _, peak_decrypt = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_encrypt < limit, peak_encrypt
    assert peak_decrypt < limit, peak_decrypt
    assert sha256_file(out) == sha256_file(src)


# ------------------------------------------------------------------ CLI


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route ``run()`` to an app with the three commands unless main.py registers them."""
    registered = typer.main.get_command(cli_main.app)
    names = getattr(registered, "commands", {})
    if not {"encrypt", "decrypt", "rewrap"} <= set(names):
        app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        app.command("encrypt")(encrypt_command)
        app.command("decrypt")(decrypt_command)
        app.command("rewrap")(rewrap_command)
        monkeypatch.setattr(cli_main, "app", app)
    monkeypatch.delenv("BASTION_KEK", raising=False)


@pytest.mark.usefixtures("cli")
def test_cli_round_trip_rotation_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = cli_main.run
    key, new_key, src = tmp_path / "kek", tmp_path / "kek2", tmp_path / "model.onnx"
    src.write_bytes(data(5000))
    assert run(["encrypt", "--generate-key", str(key)]) == 0
    assert "wrote a new key" in capsys.readouterr().out
    assert run(["encrypt", str(src), "--key-file", str(key), "--chunk-size", "1024"]) == 0
    assert "5 chunks" in capsys.readouterr().out
    enc = tmp_path / "model.onnx.enc"
    assert is_encrypted(enc)
    assert read_header(enc).chunk_size == 1024

    src.unlink()
    assert run(["decrypt", str(enc), "-k", str(key)]) == 0
    assert src.read_bytes() == data(5000)
    assert run(["decrypt", str(enc), "-k", str(key)]) == 2  # exists: needs --force
    assert "already exists" in capsys.readouterr().err

    # rotation, with the old key from BASTION_KEK and the new one from a named variable
    monkeypatch.setenv("BASTION_KEK", key.read_text())
    write_kek(new_key)
    monkeypatch.setenv("NEW_KEK", new_key.read_text())
    assert run(["rewrap", str(enc), "--new-key-env", "NEW_KEK"]) == 0
    assert "rewrapped" in capsys.readouterr().out
    out = tmp_path / "restored.onnx"
    assert run(["decrypt", str(enc), "-o", str(out)]) == 2  # BASTION_KEK is the old key
    assert "wrong key" in capsys.readouterr().err
    assert not out.exists()
    assert run(["decrypt", str(enc), "-o", str(out), "--key-env", "NEW_KEK"]) == 0
    assert out.read_bytes() == data(5000)

    # usage errors: one line, exit 2
    monkeypatch.delenv("BASTION_KEK")
    assert run(["encrypt", str(src), "-o", str(tmp_path / "x.enc")]) == 2
    assert "no key" in capsys.readouterr().err
    assert run(["encrypt"]) == 2
    assert run(["encrypt", "--generate-key", str(key)]) == 2  # never overwrites a key
    assert run(["decrypt", str(src), "-k", str(key)]) == 2  # no .enc suffix, no --out
    assert "--out is needed" in capsys.readouterr().err
    assert run(["rewrap", str(enc), "-k", str(new_key)]) == 2
    assert "--new-key-file" in capsys.readouterr().err
