"""``bastion lineage``: show a model version's lineage, record training runs, export
OpenLineage run events (see :mod:`bastion.governance.lineage`).

The registry is the one ``BASTION_HOME`` / ``BASTION_DATABASE_URL`` name; the caller is the
owner of ``--token`` / ``BASTION_TOKEN`` (nobody needs one while the registry has no users).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.exceptions import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bastion.governance.access import Identity

__all__ = ["app", "export_events", "record_training", "show_tree"]

app = typer.Typer(
    help=(
        "Lineage: datasets, gate and training runs, reports and model versions as one graph. "
        "Show a model version's upstream tree, record training runs, export OpenLineage events."
    ),
    no_args_is_help=True,
)


class TreeFormat(StrEnum):
    text = "text"
    json = "json"


class ExportFormat(StrEnum):
    openlineage = "openlineage"


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="BASTION_TOKEN",
        show_envvar=True,
        help="API token (needed once the registry has users).",
    ),
]


def _open(token: str | None, operation: str) -> tuple[Engine, Identity]:
    from bastion.governance.access import AccessControl
    from bastion.governance.db import engine_for, resolve_location

    engine = engine_for(resolve_location())
    access = AccessControl(engine)
    identity = access.authenticate(token)
    access.require(identity, operation)
    return engine, identity


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="MODEL@VERSION, MODEL@ALIAS or MODEL (latest).")],
    output_format: Annotated[
        TreeFormat, typer.Option("--format", "-f", help="text tree or JSON.")
    ] = TreeFormat.text,
    token: TokenOpt = None,
) -> None:
    """Print what a model version came from: the reports that evaluated it, the runs that
    produced them and it, and the datasets those runs read."""
    sys.stdout.write(show_tree(ref, output_format=output_format.value, token=token))


@app.command("export")
def export(
    export_format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="Event format.")
    ] = ExportFormat.openlineage,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file (default: stdout).")
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", help="OpenLineage namespace of jobs and datasets.")
    ] = "bastion",
    token: TokenOpt = None,
) -> None:
    """Write every recorded run as OpenLineage 2-0-2 RunEvents, one JSON object a line
    (a START and a COMPLETE or FAIL event per finished run)."""
    count = export_events(out, namespace=namespace, token=token)
    if out is not None:
        typer.echo(f"wrote {count} OpenLineage events to {out}", err=True)


@app.command("record-training")
def record_training_command(
    name: Annotated[str, typer.Option("--name", help="The training job's name.")],
    data: Annotated[
        list[Path], typer.Option("--data", "-d", help="A dataset it read, CSV or Parquet (repeat).")
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="The model version it produced: MODEL@VERSION.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A hyper-parameter as KEY=VALUE (repeatable)."),
    ] = None,
    token: TokenOpt = None,
) -> None:
    """Record a training run: the datasets it read (hashed and recorded) and the model
    version it produced. Prints the run id."""
    run_id = record_training(name, data, model, _params(param or []), token=token)
    typer.echo(run_id)


def show_tree(ref: str, *, output_format: str = "text", token: str | None = None) -> str:
    """The lineage tree of ``ref`` as text or JSON (needs ``lineage.read``)."""
    from bastion.governance.lineage import Lineage, render_tree

    engine, _ = _open(token, "lineage.read")
    tree = Lineage(engine).tree(ref)
    if output_format == "json":
        return json.dumps(tree.to_dict(), indent=2, ensure_ascii=False) + "\n"
    return render_tree(tree)


def export_events(out: Path | None, *, namespace: str = "bastion", token: str | None = None) -> int:
    """Write OpenLineage events as JSON lines to ``out`` (stdout when None); returns the
    count (needs ``lineage.read``)."""
    from bastion.governance.lineage import iter_jsonl, openlineage_events

    engine, _ = _open(token, "lineage.read")
    lines = [line + "\n" for line in iter_jsonl(openlineage_events(engine, namespace=namespace))]
    if out is None:
        sys.stdout.writelines(lines)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as fh:
            fh.writelines(lines)
    return len(lines)


def record_training(
    name: str,
    data: list[Path],
    model: str,
    params: dict[str, Any],
    *,
    token: str | None = None,
) -> str:
    """Hash and record each data file (name: the file's stem; schema: pandas dtypes), then
    the training run; returns its id (needs ``lineage.record``)."""
    from bastion.data.dataset import read_table
    from bastion.governance.lineage import Lineage
    from bastion.models.formats import sha256_file

    engine, identity = _open(token, "lineage.record")
    lineage = Lineage(engine)
    shas = []
    for path in data:
        frame = read_table(path)  # DataError names a missing or unreadable file
        sha = sha256_file(path)
        columns = {str(c): str(t) for c, t in frame.dtypes.items()}
        lineage.record_dataset(
            sha, path.stem, str(path.absolute()), columns, len(frame), by=identity
        )
        shas.append(sha)
    return lineage.record_training_run(name, shas, model, params, by=identity)


def _params(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; a value that parses as JSON (numbers, true, lists) keeps its type."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param must be KEY=VALUE; received {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out
