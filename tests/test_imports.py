"""`import bastion` and `bastion --help` stay light: no torch, onnxruntime, fastapi, matplotlib."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bastion._optional import install_hint, require
from bastion.exceptions import MissingExtraError

HEAVY = ("torch", "onnxruntime", "fastapi", "matplotlib")

PROBE = """
import sys
{code}
heavy = [m for m in {heavy!r} if m in sys.modules]
print(",".join(heavy))
"""


@pytest.mark.parametrize(
    "code",
    [
        "import bastion",
        "import bastion.config, bastion.runner, bastion.checks",
        "from bastion.checks import CHECKS; CHECKS.ids()",
        (
            "from bastion.cli.main import run\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert run(['--help']) == 0"
        ),
    ],
)
def test_no_heavy_imports(code: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"


def test_missing_extra_names_the_pip_command() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install 'bastion\[torch\]'") as info:
        require("torch._definitely_missing_module", "white-box attacks")
    assert isinstance(info.value, ImportError)
    assert install_hint("onnxruntime") == "pip install 'bastion[onnx]'"
    assert install_hint("fastapi") == "pip install 'bastion[gateway]'"


def test_cli_needs_no_undeclared_click() -> None:
    # typer vendors its click; a stray `import click` worked here only because another
    # package installed it, and broke `make demo` on a fresh machine
    code = (
        "import sys; sys.modules['click'] = None\n"
        "from bastion.cli.main import run\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert run(['--help']) == 0\n"
        "    assert run(['check', '--fail-on', 'nope']) == 2\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
