"""Restricted unpicklers and allowlist pins: the loader enforces what the scanner decided."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from bastion.exceptions import UnsafeArtifactError
from bastion.supply import Allowlist, scan_bytes
from bastion.supply.safe_load import load_joblib_bytes, load_pickle_bytes, load_torch_bytes


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def forest() -> tuple[RandomForestClassifier, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.random((60, 4))
    return RandomForestClassifier(n_estimators=3, random_state=0).fit(X, X[:, 0] > 0.5), X


@pytest.mark.parametrize("compress", [0, 3, "gzip", "xz"])
def test_joblib_round_trip_through_the_restricted_loader(
    forest: tuple[RandomForestClassifier, np.ndarray], compress: Any
) -> None:
    model, X = forest
    buf = io.BytesIO()
    joblib.dump({"m": model, "o": np.array([1, "a"], dtype=object)}, buf, compress=compress)
    loaded = load_joblib_bytes(buf.getvalue())
    np.testing.assert_array_equal(loaded["m"].predict(X), model.predict(X))
    assert list(loaded["o"]) == [1, "a"]


def test_every_loader_refuses_what_the_allowlist_does_not_hold(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = _Touch(marker)
    with pytest.raises(UnsafeArtifactError, match="system"):
        load_pickle_bytes(pickle.dumps(evil))
    buf = io.BytesIO()
    # joblib reads object arrays with a bare pickle.load: the restricted loader must not
    joblib.dump({"o": np.array([evil, 1], dtype=object)}, buf)
    with pytest.raises(UnsafeArtifactError, match="system"):
        load_joblib_bytes(buf.getvalue())
    torch = pytest.importorskip("torch")
    for zipped in (True, False):
        t = io.BytesIO()
        torch.save({"w": torch.zeros(2), "x": evil}, t, _use_new_zipfile_serialization=zipped)
        with pytest.raises(UnsafeArtifactError, match="system"):
            load_torch_bytes(t.getvalue())
    assert not marker.exists()


def test_torch_modules_load_from_both_formats() -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    for zipped in (True, False):
        buf = io.BytesIO()
        torch.save(net, buf, _use_new_zipfile_serialization=zipped)
        loaded = load_torch_bytes(buf.getvalue())
        x = torch.ones(1, 3)
        torch.testing.assert_close(loaded(x), net(x))


def test_pins_hold_an_allowlisted_class_to_its_module_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "bastion_pinned_mod.py"
    module.write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = b"\x80\x04\x8c\x12bastion_pinned_mod\x8c\x05Thing\x93)R."
    name = "bastion_pinned_mod.Thing"
    good = hashlib.sha256(module.read_bytes()).hexdigest()
    assert scan_bytes(data, "p", allow=Allowlist.of({name: good})).safe
    changed = scan_bytes(data, "p", allow=Allowlist.of({name: "0" * 64}))
    assert [(f.rule, f.verdict.value) for f in changed.findings] == [("SC009", "unsafe")]
    assert "bastion_pinned_mod.py has sha256" in changed.findings[0].message
    sys.modules.pop("bastion_pinned_mod", None)
    loaded = load_pickle_bytes(data, allow=Allowlist.of([name]))
    assert type(loaded).__name__ == "Thing"
