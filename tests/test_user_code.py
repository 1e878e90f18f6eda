from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bastion._user_code import resolve_reference, seeded_randomness
from bastion.exceptions import ConfigError


def test_a_reference_names_a_callable() -> None:
    assert resolve_reference("os.path:join", what="factory") is os.path.join


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_colon", "train_fn must look like 'package.module:function'"),
        ("os.path:", "train_fn must look like"),
        ("no_such_package_here:f", "train_fn 'no_such_package_here:f': cannot import"),
        ("os.path:no_such_name", "has no attribute 'no_such_name'"),
        ("os:sep", "train_fn 'os:sep' is not callable"),
    ],
)
def test_bad_references_name_the_setting(reference: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_reference(reference, what="train_fn")


def test_the_working_folder_is_searched_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console script does not put the working folder on sys.path: a user's recipes.py
    there is still found, with the folder appended after every installed package."""
    (tmp_path / "bastion_user_recipes.py").write_text("def train(X, y):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "bastion_user_recipes", raising=False)
    fn = resolve_reference("bastion_user_recipes:train", what="train_fn")
    assert fn.__module__ == "bastion_user_recipes"
    assert sys.path[-1] == str(tmp_path)


def test_user_code_runs_with_seeded_generators_that_are_put_back() -> None:
    import random

    import numpy as np

    torch = pytest.importorskip("torch")

    def draws() -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    before = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    with seeded_randomness(7):
        first = draws()
    after = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    with seeded_randomness(7):
        again = draws()
    with seeded_randomness(8):
        other = draws()
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))
    # the caller's own random state is untouched
    assert before[0] == after[0]
    assert all(np.array_equal(a, b) for a, b in zip(before[1], after[1], strict=True))
    assert torch.equal(before[2], after[2])


def test_a_recipe_module_that_imports_torch_is_seeded_from_its_first_call(
    tmp_path: Path,
) -> None:
    """The documented way for torch recipes: torch imported at the top of the recipe's
    module, which is imported (resolve_reference) before the run. A fresh process, so that
    nothing else loaded torch first."""
    import subprocess

    pytest.importorskip("torch")
    (tmp_path / "bastion_seeded_recipe.py").write_text(
        "import torch\n\n\ndef train():\n    return float(torch.rand(1))\n", encoding="utf-8"
    )
    script = (
        "import sys\n"
        "from bastion._user_code import resolve_reference, seeded_randomness\n"
        "assert 'torch' not in sys.modules\n"
        "train = resolve_reference('bastion_seeded_recipe:train', what='train_fn')\n"
        "with seeded_randomness(5):\n"
        "    first = train()\n"
        "with seeded_randomness(5):\n"
        "    second = train()\n"
        "print(first == second)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.stdout.strip() == "True", done.stderr


@pytest.mark.gpu
def test_cuda_generators_are_seeded_and_put_back_once_cuda_is_up() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.zeros(1, device="cuda")  # CUDA is up: its generators are seeded too

    def draw() -> float:
        return float(torch.rand(1, device="cuda"))

    before = torch.cuda.get_rng_state_all()
    with seeded_randomness(7):
        first = draw()
    after = torch.cuda.get_rng_state_all()
    with seeded_randomness(7):
        again = draw()
    with seeded_randomness(8):
        other = draw()
    assert first == again
    assert first != other
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
