"""detect_format reads content, not extensions; sha256_path covers files and folders."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import pickle
import struct
from pathlib import Path

import joblib
import numpy as np
import pytest

from bastion.exceptions import ModelError
from bastion.models.formats import detect_format, sha256_file, sha256_path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_pickle_any_protocol(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "model.onnx"  # the extension lies
    path.write_bytes(pickle.dumps({"a": 1}, protocol=protocol))
    assert detect_format(path) == "pickle"


@pytest.mark.parametrize(
    "compress", [0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)]
)
def test_joblib_plain_and_compressed(tmp_path: Path, compress: object) -> None:
    path = tmp_path / "model.bin"
    joblib.dump({"w": np.arange(10)}, path, compress=compress)
    assert detect_format(path) == "pickle"


@pytest.mark.parametrize(
    "wrap",
    [gzip.compress, bz2.compress, lzma.compress],
    ids=["gzip", "bz2", "xz"],
)
def test_compressed_plain_pickle(tmp_path: Path, wrap: object) -> None:
    path = tmp_path / "m.dat"
    path.write_bytes(wrap(pickle.dumps([1, 2, 3], protocol=4)))  # type: ignore[operator]
    assert detect_format(path) == "pickle"


def test_compressed_non_pickle_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "m.gz"
    path.write_bytes(gzip.compress(b"just some text, no pickle here"))
    assert detect_format(path) == "unknown"


def test_safetensors(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "weights.pkl"  # the extension lies the other way
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    assert detect_format(path) == "safetensors"


def test_safetensors_header_length_beyond_file_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b'{"a": 1}')
    assert detect_format(path) == "unknown"


@pytest.mark.parametrize(
    "content",
    [b"", b"hello world\n", b"a,b,c\n1,2,3\n", bytes(range(256)), b"\x08\x07"],
    ids=["empty", "text", "csv", "bytes", "truncated-protobuf"],
)
def test_unknown(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    assert detect_format(path) == "unknown"


def test_onnx(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    path = tmp_path / "model.pickle"
    onnx.save_model(helper.make_model(graph), path)
    assert detect_format(path) == "onnx"


def test_zip_formats(tmp_path: Path) -> None:
    import zipfile

    def make(name: str, members: list[str]) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as zf:
            for member in members:
                zf.writestr(member, b"pt2" if member.endswith("archive_format") else b"x")
        return path

    assert detect_format(make("a.zip", ["m/archive_format", "m/models/model.json"])) == (
        "torch-export"
    )
    assert detect_format(make("b.zip", ["m/data.pkl", "m/data/0"])) == "torch-pickle"
    assert detect_format(make("c.zip", ["m/data.pkl", "m/constants.pkl", "m/code/m.py"])) == (
        "torchscript"
    )
    assert detect_format(make("d.zip", ["readme.txt"])) == "unknown"


def test_torch_save_is_torch_pickle(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    assert detect_format(path) == "torch-pickle"


def test_torch_export_archive(pt2_file: Path) -> None:
    assert detect_format(pt2_file) == "torch-export"


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        detect_format(tmp_path / "nope.onnx")


def test_sha256_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"aaa")
    (tmp_path / "sub" / "b.bin").write_bytes(b"bbb")
    assert sha256_file(tmp_path / "a.bin") == hashlib.sha256(b"aaa").hexdigest()
    assert sha256_path(tmp_path / "a.bin") == hashlib.sha256(b"aaa").hexdigest()
    lines = sorted(
        [
            f"a.bin\0{hashlib.sha256(b'aaa').hexdigest()}\n",
            f"sub/b.bin\0{hashlib.sha256(b'bbb').hexdigest()}\n",
        ]
    )
    expected = hashlib.sha256("".join(lines).encode()).hexdigest()
    before = sha256_path(tmp_path)
    assert before == expected
    (tmp_path / "sub" / "b.bin").write_bytes(b"bbc")
    assert sha256_path(tmp_path) != before
    (tmp_path / "sub" / "b.bin").write_bytes(b"bbb")
    (tmp_path / "sub" / "b.bin").rename(tmp_path / "sub" / "c.bin")  # a rename changes it too
    assert sha256_path(tmp_path) != before
    with pytest.raises(ModelError):
        sha256_path(tmp_path / "missing")
