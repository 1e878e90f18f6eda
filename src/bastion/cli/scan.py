"""``bastion scan``: scan model files without loading them (see :mod:`bastion.supply`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from bastion.exceptions import ConfigError

__all__ = ["run_scan"]


def run_scan(
    paths: Sequence[Path],
    *,
    output_format: str = "text",
    allow: Sequence[str] = (),
    config: Path | None = None,
    out: Path | None = None,
    verbose: bool = False,
    digest: bool = True,
) -> int:
    """Scan ``paths`` (folders recursively), write the result, return the exit code.

    Raises:
        ConfigError: a path does not exist, or the policy file is invalid.
    """
    from bastion.supply import Allowlist, iter_files, scan_path
    from bastion.supply.output import exit_code, render_json, render_sarif, render_text

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(missing)}")
    names: dict[str, str | None] = {}
    if config is not None:
        from bastion.config import load_policy

        policy_allow = load_policy(config).spec.scan.allowlist()
        names.update({n: policy_allow.pins.get(n) for n in policy_allow.extra})
    names.update({n: None for n in allow if n not in names})
    allowlist = Allowlist.of(names)
    files = list(iter_files(paths))
    if not files:
        raise ConfigError(f"no files under {', '.join(str(p) for p in paths)}")
    results = []
    live = output_format == "text" and out is None
    for file in files:
        result = scan_path(file, allow=allowlist, digest=digest)
        results.append(result)
        if live:  # people see each file as it is done
            sys.stdout.write(render_text([result], verbose).rsplit("\n", 2)[0] + "\n")
            sys.stdout.flush()
    if output_format == "json":
        text = render_json(results)
    elif output_format == "sarif":
        text = render_sarif(results)
    else:
        text = render_text(results, verbose)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    elif live:
        sys.stdout.write(text.rsplit("\n", 2)[-2] + "\n")  # the summary line
    else:
        sys.stdout.write(text)
    return exit_code(results)
