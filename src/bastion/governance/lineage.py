"""Lineage: datasets, runs, model versions and gate reports as one graph, shown as a tree and
exported as OpenLineage run events.

Nodes (kind, id):

- ``dataset`` (sha256 of the file, or of the frame's rows): name, location, column schema,
  rows; stored in the ``datasets`` table, recorded once per content hash.
- ``run`` (uuid): a ``gate`` run (``bastion check``), a ``training`` run (recorded by the user
  through the API or ``bastion lineage record-training``) or a ``release`` run; ``runs`` table.
- ``report`` (sha256 of ``report.json``): the output of a gate run.
- ``model_version`` (``name@version``): a registered model version.

Edges (``lineage_edges``), each read "src relation dst", with the kinds each relation allows
(:data:`RELATIONS`): ``dataset|report|model_version input_of run``, ``run produced
dataset|report|model_version``, ``report evaluated model_version`` and ``model_version
trained_on dataset`` (the shortcut when the training run itself was not recorded). A model
version registered with a ``report_sha256`` is also evaluated by that report, without an edge.

Why a graph and not a column on the model version: the question an auditor asks ("which data
did the model that served this prediction see, and which gate passed it?") crosses several
runs; the graph answers it by walking upstream (:meth:`Lineage.tree`), and OpenLineage
consumers (Marquez, DataHub, OpenMetadata) rebuild the same graph from the run events
(:func:`openlineage_events`).

Every recorded node and edge appends an event to the audit chain; recording needs the
``lineage.record`` permission. Reads are unchecked here: the CLI and the HTTP API check
``lineage.read`` at their boundary, as for the audit trail.

OpenLineage mapping (spec 2-0-2): one ``START`` and one ``COMPLETE`` or ``FAIL`` RunEvent per
finished run (``START`` only while it runs); the job is ``<kind>.<run name>`` in the export's
namespace; inputs are the run's ``input_of`` nodes (a gate run also reads the model versions
its report evaluated), outputs its ``produced`` nodes. Data files are named by their location
(``memory/<name>`` for in-memory frames) and versioned by content hash, models are
``models/<name>`` versioned by version number, reports ``reports/<sha256>``. Standard facets:
``schema``, ``version``, ``processing_engine``, ``jobType``; custom facets ``bastion_hash`` and
``bastion_run`` follow ``bastion/schemas/openlineage-facets.v1.json`` (shipped with the
package).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

from sqlalchemy import Engine, and_, or_, select, text

from bastion import __version__
from bastion.exceptions import ConfigError, DataError
from bastion.governance import schema
from bastion.governance.access import AccessControl, Identity
from bastion.governance.audit import AuditLog, canonical_json, utc_now

__all__ = [
    "FACETS_SCHEMA_URL",
    "NODE_KINDS",
    "PRODUCER",
    "RELATIONS",
    "RUN_EVENT_SCHEMA_URL",
    "RUN_KINDS",
    "Lineage",
    "LineageNode",
    "iter_jsonl",
    "load_facets_schema",
    "openlineage_events",
    "render_tree",
]

NODE_KINDS = ("dataset", "run", "report", "model_version")
RUN_KINDS = ("gate", "training", "release")
RunKind = Literal["gate", "training", "release"]
RunStatus = Literal["completed", "failed"]

# relation -> (allowed source kinds, allowed destination kinds)
RELATIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "input_of": (frozenset({"dataset", "report", "model_version"}), frozenset({"run"})),
    "produced": (frozenset({"run"}), frozenset({"dataset", "report", "model_version"})),
    "evaluated": (frozenset({"report"}), frozenset({"model_version"})),
    "trained_on": (frozenset({"model_version"}), frozenset({"dataset"})),
}
# relations whose source is upstream of (came before) the destination; trained_on points back
_FORWARD = frozenset({"input_of", "produced", "evaluated"})
# tree order of a node's parents: how it was judged, how it was made, what it read
_RANK = {"evaluated": 0, "produced": 1, "trained_on": 2, "input_of": 3}
_PHRASE = {
    "evaluated": "evaluated by",
    "produced": "produced by",
    "trained_on": "trained on",
    "input_of": "input",
}

PRODUCER = f"https://github.com/bastion-ml/bastion/tree/v{__version__}"
RUN_EVENT_SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACETS_SCHEMA_URL = (
    "https://raw.githubusercontent.com/bastion-ml/bastion/main/src/bastion/schemas/"
    "openlineage-facets.v1.json"
)
# the standard facets' schemas, at the versions the OpenLineage client 1.x writes
_OL_FACETS = "https://openlineage.io/spec/facets"
_SCHEMA_FACET_URL = f"{_OL_FACETS}/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
_VERSION_FACET_URL = (
    f"{_OL_FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
)
_ENGINE_FACET_URL = (
    f"{_OL_FACETS}/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"
)
_JOB_TYPE_FACET_URL = f"{_OL_FACETS}/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_SHORT = 12  # hex digits of a hash shown in the tree


@cache
def load_facets_schema() -> dict[str, Any]:
    """The JSON Schema of Bastion's custom OpenLineage facets, shipped with the package."""
    text = resources.files("bastion").joinpath("schemas/openlineage-facets.v1.json")
    loaded: dict[str, Any] = json.loads(text.read_text("utf-8"))
    return loaded


# -- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageNode:
    """One node of a lineage tree and the nodes upstream of it.

    Attributes:
        kind: ``model_version``, ``report``, ``run`` or ``dataset``.
        id: ``name@version``, a sha256 or a run's uuid.
        relation: how this node relates to the node above it in the tree (``evaluated``,
            ``produced``, ``trained_on``, ``input_of``); None at the root.
        details: what the registry knows about the node (name, location, status, ...).
        children: the nodes directly upstream of this one.
        repeated: the node already appears higher in the tree, which lists its parents there
            (a dataset that fed both the training run and the gate run, or a cycle).
    """

    kind: str
    id: str
    relation: str | None
    details: Mapping[str, Any]
    children: tuple[LineageNode, ...] = ()
    repeated: bool = False

    def walk(self) -> Iterator[LineageNode]:
        """This node and every node below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "relation": self.relation,
            "details": dict(self.details),
            "repeated": self.repeated,
            "children": [c.to_dict() for c in self.children],
        }


def render_tree(node: LineageNode) -> str:
    """A text tree drawn with box characters, one node a line: names and short hashes.

    Example output::

        cancer@3  model version, registered 2026-11-26 by alice, gate passed
        ├── evaluated by: report 5d41402abc4b  gate passed
        │   └── produced by: gate run cancer  1b9d6bcd  completed 2026-11-26 05:52  by alice
        │       └── input: dataset train  9f86d081884c  455 rows  data/train.csv
        └── produced by: training run fit  6fa459ea  completed 2026-11-26 05:40  by alice
            └── input: dataset train  9f86d081884c  455 rows  data/train.csv  (shown above)
    """
    lines = [_label(node)]
    _render_children(node, "", lines)
    return "\n".join(lines) + "\n"


def _render_children(node: LineageNode, prefix: str, lines: list[str]) -> None:
    for i, child in enumerate(node.children):
        last = i == len(node.children) - 1
        phrase = _PHRASE.get(child.relation or "", child.relation or "")
        line = f"{prefix}{'└── ' if last else '├── '}{phrase}: {_label(child)}"
        lines.append(line + ("  (shown above)" if child.repeated else ""))
        _render_children(child, prefix + ("    " if last else "│   "), lines)


def _label(node: LineageNode) -> str:
    d = node.details
    if node.kind == "model_version":
        parts = [f"{node.id}  model version"]
        if d.get("registered"):
            parts.append(f"registered {str(d['created_at'])[:10]} by {d['created_by']}")
        else:
            parts.append("not registered")
        if d.get("gate_passed") is not None:
            parts.append("gate passed" if d["gate_passed"] else "gate failed")
        return ", ".join(parts)
    if node.kind == "dataset":
        text = f"dataset {d.get('name', '?')}  {node.id[:_SHORT]}"
        if d.get("rows") is not None:
            text += f"  {d['rows']} rows"
        if d.get("location"):
            text += f"  {d['location']}"
        return text
    if node.kind == "run":
        when = str(d.get("started_at", ""))[:16].replace("T", " ")
        return (
            f"{d.get('kind', '?')} run {d.get('name', '?')}  {node.id[:8]}  "
            f"{d.get('status', '?')} {when}  by {d.get('actor', '?')}"
        )
    if node.kind == "report":
        text = f"report {node.id[:_SHORT]}"
        if d.get("passed") is not None:
            text += "  gate passed" if d["passed"] else "  gate failed"
        return text
    return f"{node.kind} {node.id}"


# -- recording --------------------------------------------------------------------------------

_AuditEntry = tuple[str, str, str, Mapping[str, Any] | None]


@dataclass
class Lineage:
    """Record and read the lineage graph of one registry database.

    Example::

        >>> lineage = Lineage(engine)                                          # doctest: +SKIP
        >>> lineage.record_dataset(sha, "train", "data/train.csv", {"age": "int64"}, 455, by=me)
        >>> run = lineage.record_training_run("fit", [sha], "cancer@3", {"C": 1.0}, by=me)
        >>> print(render_tree(lineage.tree("cancer@3")))
    """

    engine: Engine
    _access: AccessControl = field(init=False, repr=False)
    _audit: AuditLog = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._access = AccessControl(self.engine)
        self._audit = AuditLog(self.engine)

    # -- nodes and edges ----------------------------------------------------------------------
    def record_dataset(
        self,
        sha256: str,
        name: str,
        location: str,
        schema: Mapping[str, str],
        rows: int | None,
        *,
        by: Identity,
    ) -> bool:
        """Record a dataset once per content hash.

        Parameters:
            sha256: content hash (64 lowercase hex digits).
            name: its role or file name (``train``, ``test``).
            location: where it lives (a path or URL; ``""`` for an in-memory frame).
            schema: column name -> type, in column order (``{"age": "int64"}``).
            rows: row count, if known.
            by: who records it (needs ``lineage.record``).

        Returns:
            True when the dataset was new; False when that hash was already recorded (the
            first record's name and location are kept: the content is what identifies it).

        Raises:
            ConfigError: a malformed hash, name, schema or row count.
            AccessDeniedError: the identity may not record lineage.
        """
        self._access.require(by, "lineage.record")
        row = _dataset_row(sha256, name, location, schema, rows)
        with self.engine.begin() as conn:
            audit = _insert_dataset(conn, row, by)
        self._audit.append_many(audit)
        return bool(audit)

    def start_run(
        self,
        kind: RunKind,
        name: str,
        *,
        by: Identity,
        facets: Mapping[str, Any] | None = None,
    ) -> str:
        """Record the start of a run; returns its id (a uuid).

        Parameters:
            kind: ``gate``, ``training`` or ``release``.
            name: the job's name (project, pipeline step).
            by: who runs it (needs ``lineage.record``).
            facets: JSON-able details kept with the run (parameters, code version).

        Raises:
            ConfigError: unknown kind, empty name or facets that are not JSON.
        """
        self._access.require(by, "lineage.record")
        row = _run_row(kind, name, by, facets, status="running", started_at=utc_now())
        with self.engine.begin() as conn:
            conn.execute(schema.runs.insert().values(**row))
        self._audit.append(by.name, "lineage.run.start", f"run:{row['id']}", _run_audit(row))
        return str(row["id"])

    def finish_run(self, run_id: str, status: RunStatus, *, by: Identity) -> None:
        """Mark a running run ``completed`` or ``failed``.

        Raises:
            ConfigError: a status other than completed / failed, or the run already ended.
            DataError: no run has that id.
        """
        self._access.require(by, "lineage.record")
        if status not in ("completed", "failed"):
            raise ConfigError(f"run status must be 'completed' or 'failed'; received {status!r}")
        _check_id("run", run_id)
        runs = schema.runs
        with self.engine.begin() as conn:
            # FOR UPDATE (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises): two
            # finishers of one run never both see it running
            row = conn.execute(
                select(runs.c.status, runs.c.started_at)
                .where(runs.c.id == run_id)
                .with_for_update()
            ).first()
            if row is None:
                raise DataError(f"no run {run_id} in the lineage graph")
            if row.status != "running":
                raise ConfigError(f"run {run_id} already ended ({row.status})")
            # never end before the start, even when the clocks of two machines disagree
            ended = max(utc_now(), str(row.started_at))
            conn.execute(
                runs.update().where(runs.c.id == run_id).values(status=status, ended_at=ended)
            )
        self._audit.append(by.name, "lineage.run.finish", f"run:{run_id}", {"status": status})

    def link(
        self,
        src_kind: str,
        src_id: str,
        relation: str,
        dst_kind: str,
        dst_id: str,
        *,
        by: Identity,
    ) -> bool:
        """Record the edge "src relation dst" (idempotent).

        Datasets and runs must have been recorded; model versions and reports need only be
        well-formed (a gate report may be linked before its model version is registered).
        A model version may be named by alias (``cancer@production``); the edge stores the
        version it points at.

        Returns:
            True when the edge was new.

        Raises:
            ConfigError: unknown relation, or kinds the relation does not allow.
            DataError: the dataset, run or aliased model does not exist.
        """
        self._access.require(by, "lineage.record")
        with self.engine.begin() as conn:
            audit = _insert_edge(conn, (src_kind, src_id, relation, dst_kind, dst_id), by)
        self._audit.append_many(audit)
        return bool(audit)

    # -- whole runs ---------------------------------------------------------------------------
    def record_gate_run(
        self,
        report: Mapping[str, Any],
        report_sha256: str,
        model_ref: str | None = None,
        *,
        by: Identity,
    ) -> str:
        """Record a finished gate run from its ``bastion.report/v1`` document.

        Records each dataset the report read (column types from its profile), a completed
        ``gate`` run timed from the report, the report node, and the edges ``dataset input_of
        run``, ``run produced report`` and, with ``model_ref``, ``report evaluated model``.
        The run is ``completed`` whether or not the gate passed: the verdict is data (kept in
        the run's facets and the report), not a failure of the run. Recording the same report
        again records no new run and returns the first one's id.

        Parameters:
            report: the report's JSON document (as loaded from ``report.json``).
            report_sha256: sha256 of ``report.json``'s bytes: the report's id.
            model_ref: the model version the report judged (``name@version``), if registered.
            by: who records it (needs ``lineage.record``).

        Returns:
            The gate run's id.

        Raises:
            DataError: the document does not follow the report schema.
            ConfigError: a malformed hash or model reference.
        """
        self._access.require(by, "lineage.record")
        _check_id("report", report_sha256)
        _validate_report(report)
        datasets = _report_datasets(report)
        ended = _utc(str(report["created_at"]))
        total = float(report.get("timings", {}).get("total_s", 0.0))
        started = _format_utc(_parse_utc(ended) - dt.timedelta(seconds=max(total, 0.0)))
        verdict = report["verdict"]
        facets = {
            "report": {
                "sha256": report_sha256,
                "project": report["project"],
                "passed": bool(verdict["passed"]),
                "fail_on": verdict["fail_on"],
                "created_at": report["created_at"],
                "bastion_version": report["bastion_version"],
            },
            "model": _model_summary(report.get("model")),
        }
        e = schema.lineage_edges
        audit: list[_AuditEntry] = []
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # concurrent recorders of one report record one run (SQLite: BEGIN IMMEDIATE)
                key = int(report_sha256[:15], 16)
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            earlier = conn.execute(
                select(e.c.src_id).where(
                    e.c.src_kind == "run",
                    e.c.relation == "produced",
                    e.c.dst_kind == "report",
                    e.c.dst_id == report_sha256,
                )
            ).first()
            if earlier is not None:
                run_id = str(earlier.src_id)
            else:
                run = _run_row(
                    "gate", str(report["project"]) or "gate", by, facets,
                    status="completed", started_at=started, ended_at=ended,
                )  # fmt: skip
                run_id = str(run["id"])
                conn.execute(schema.runs.insert().values(**run))
                audit.append((by.name, "lineage.run.record", f"run:{run_id}", _run_audit(run)))
                for row in datasets:
                    audit += _insert_dataset(conn, row, by)
                    edge = ("dataset", row["sha256"], "input_of", "run", run_id)
                    audit += _insert_edge(conn, edge, by)
                audit += _insert_edge(
                    conn, ("run", run_id, "produced", "report", report_sha256), by
                )
            if model_ref is not None:
                edge = ("report", report_sha256, "evaluated", "model_version", model_ref)
                audit += _insert_edge(conn, edge, by)
        self._audit.append_many(audit)
        return run_id

    def record_training_run(
        self,
        name: str,
        inputs: Sequence[str],
        output: str,
        params: Mapping[str, Any] | None = None,
        *,
        by: Identity,
    ) -> str:
        """Record a finished training run: ``dataset input_of run produced model_version``.

        Parameters:
            name: the training job's name.
            inputs: sha256 of each dataset it read (each recorded with :meth:`record_dataset`).
            output: the model version it produced (``name@version``).
            params: hyper-parameters and other JSON-able details, kept as the run's facets.
            by: who records it (needs ``lineage.record``).

        Returns:
            The run's id.

        Raises:
            DataError: an input dataset was not recorded.
            ConfigError: a malformed hash, model reference or parameters.
        """
        self._access.require(by, "lineage.record")
        if not inputs:
            raise ConfigError("a training run needs at least one input dataset")
        for sha in inputs:
            _check_id("dataset", sha)
        now = utc_now()
        run = _run_row(
            "training", name, by, {"params": dict(params or {})},
            status="completed", started_at=now, ended_at=now,
        )  # fmt: skip
        run_id = str(run["id"])
        audit: list[_AuditEntry] = []
        with self.engine.begin() as conn:
            conn.execute(schema.runs.insert().values(**run))
            audit.append((by.name, "lineage.run.record", f"run:{run_id}", _run_audit(run)))
            for sha in dict.fromkeys(inputs):
                audit += _insert_edge(conn, ("dataset", sha, "input_of", "run", run_id), by)
            audit += _insert_edge(conn, ("run", run_id, "produced", "model_version", output), by)
        self._audit.append_many(audit)
        return run_id

    # -- reading ------------------------------------------------------------------------------
    def tree(self, ref: str) -> LineageNode:
        """The upstream graph of a model version as a tree: the reports that evaluated it and
        the gate runs that wrote them, the run that produced it, and every dataset those runs
        read, recursively.

        Parameters:
            ref: ``name@version``, ``name@alias`` or ``name`` (its latest version).

        Raises:
            DataError: the registry knows no such model version and no edge mentions it.
            ConfigError: a malformed reference.
        """
        with self.engine.connect() as conn:
            node_id = _resolve_ref(conn, ref)
            details = _details(conn, "model_version", node_id)
            if not details["registered"] and not _mentioned(conn, "model_version", node_id):
                raise DataError(f"no model version {node_id} in the registry or its lineage")
            seen: set[tuple[str, str]] = {("model_version", node_id)}
            return _build(conn, "model_version", node_id, None, details, seen)


def _build(
    conn: Any,
    kind: str,
    node_id: str,
    relation: str | None,
    details: Mapping[str, Any],
    seen: set[tuple[str, str]],
) -> LineageNode:
    parents = []
    for rel, p_kind, p_id in _upstream(conn, kind, node_id):
        parents.append((rel, p_kind, p_id, _details(conn, p_kind, p_id)))
    parents.sort(key=lambda p: (_RANK[p[0]], _sort_key(p[1], p[2], p[3])))
    children = []
    for rel, p_kind, p_id, p_details in parents:
        if (p_kind, p_id) in seen:
            children.append(LineageNode(p_kind, p_id, rel, p_details, repeated=True))
            continue
        seen.add((p_kind, p_id))
        children.append(_build(conn, p_kind, p_id, rel, p_details, seen))
    if kind == "report":
        # a report's verdict is in the facets of the gate run that wrote it
        for child in children:
            report = child.details.get("facets", {}).get("report", {})
            if child.kind == "run" and "passed" in report:
                details = {**details, "passed": report["passed"], "project": report["project"]}
                break
    return LineageNode(kind, node_id, relation, details, tuple(children))


def _sort_key(kind: str, node_id: str, details: Mapping[str, Any]) -> tuple[str, ...]:
    if kind == "run":
        return (str(details.get("started_at", "")), node_id)
    return (str(details.get("name", "")), node_id)


def _upstream(conn: Any, kind: str, node_id: str) -> list[tuple[str, str, str]]:
    """(relation, kind, id) of each node directly upstream of (kind, id)."""
    e = schema.lineage_edges
    rows = conn.execute(
        select(e.c.src_kind, e.c.src_id, e.c.relation, e.c.dst_kind, e.c.dst_id).where(
            or_(
                and_(
                    e.c.dst_kind == kind,
                    e.c.dst_id == node_id,
                    e.c.relation.in_(sorted(_FORWARD)),
                ),
                and_(e.c.src_kind == kind, e.c.src_id == node_id, e.c.relation == "trained_on"),
            )
        )
    ).all()
    out = {
        (r.relation, r.src_kind, r.src_id)
        if r.relation in _FORWARD
        else (r.relation, r.dst_kind, r.dst_id)
        for r in rows
    }
    if kind == "model_version":
        report = _registered_report(conn, node_id)
        if report is not None:
            out.add(("evaluated", "report", report))
    return sorted(out)


def _mentioned(conn: Any, kind: str, node_id: str) -> bool:
    e = schema.lineage_edges
    row = conn.execute(
        select(e.c.id)
        .where(
            or_(
                and_(e.c.src_kind == kind, e.c.src_id == node_id),
                and_(e.c.dst_kind == kind, e.c.dst_id == node_id),
            )
        )
        .limit(1)
    ).first()
    return row is not None


def _details(conn: Any, kind: str, node_id: str) -> dict[str, Any]:
    if kind == "dataset":
        d = schema.datasets
        row = conn.execute(select(d).where(d.c.sha256 == node_id)).first()
        if row is None:
            return {"recorded": False}
        return {
            "name": row.name,
            "location": row.location,
            "rows": row.rows,
            "schema": json.loads(row.schema or "{}"),
            "created_at": row.created_at,
        }
    if kind == "run":
        r = schema.runs
        row = conn.execute(select(r).where(r.c.id == node_id)).first()
        if row is None:
            return {"recorded": False}
        return {
            "kind": row.kind,
            "name": row.name,
            "status": row.status,
            "started_at": row.started_at,
            "ended_at": row.ended_at,
            "actor": row.actor,
            "facets": json.loads(row.facets or "{}"),
        }
    if kind == "model_version":
        row = _version_row(conn, node_id)
        if row is None:
            return {"registered": False}
        return {
            "registered": True,
            "manifest_sha256": row.manifest_sha256,
            "report_sha256": row.report_sha256,
            "gate_passed": row.gate_passed,
            "created_at": row.created_at,
            "created_by": row.created_by,
        }
    return {}


def _version_row(conn: Any, ref: str) -> Any:
    name, _, version = ref.rpartition("@")
    v, m = schema.model_versions, schema.models
    return conn.execute(
        select(
            v.c.manifest_sha256, v.c.report_sha256, v.c.gate_passed, v.c.created_at,
            v.c.created_by,
        )
        .select_from(v.join(m, v.c.model_id == m.c.id))
        .where(m.c.name == name, v.c.version == int(version))
    ).first()  # fmt: skip


def _registered_report(conn: Any, ref: str) -> str | None:
    row = _version_row(conn, ref)
    if row is None or not row.report_sha256:
        return None
    return str(row.report_sha256)


def _resolve_ref(conn: Any, ref: str) -> str:
    """``name@version`` of a reference by number, alias or (bare name) latest version."""
    name, _, tag = ref.partition("@") if isinstance(ref, str) else ("", "", "")
    _check_model_name(name, ref)
    if tag.isdigit():
        return _canonical_ref(ref)[1]
    m, v, a = schema.models, schema.model_versions, schema.aliases
    model = conn.execute(select(m.c.id).where(m.c.name == name)).first()
    if model is None:
        raise DataError(f"no model {name!r} in the registry")
    if not tag:
        if "@" in ref:
            raise ConfigError(f"model reference {ref!r}: nothing after '@'")
        version = conn.execute(
            select(v.c.version)
            .where(v.c.model_id == model.id)
            .order_by(v.c.version.desc())
            .limit(1)
        ).scalar()
        if version is None:
            raise DataError(f"model {name!r} has no versions")
        return f"{name}@{int(version)}"
    version = conn.execute(
        select(v.c.version)
        .select_from(a.join(v, a.c.version_id == v.c.id))
        .where(a.c.model_id == model.id, a.c.alias == tag)
    ).scalar()
    if version is None:
        raise DataError(f"model {name!r} has no alias @{tag}")
    return f"{name}@{int(version)}"


# -- rows, checks and inserts -------------------------------------------------------------------


def _check_id(kind: str, node_id: str) -> None:
    if kind in ("dataset", "report"):
        if not isinstance(node_id, str) or not _SHA256.match(node_id):
            raise ConfigError(
                f"a {kind} id must be a sha256 (64 lowercase hex digits); received {node_id!r}"
            )
    elif kind == "run":
        try:
            ok = isinstance(node_id, str) and str(uuid.UUID(node_id)) == node_id
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"a run id must be a lowercase uuid; received {node_id!r}")
    elif kind == "model_version":
        _canonical_ref(node_id)
    else:
        raise ConfigError(f"node kind must be one of {list(NODE_KINDS)}; received {kind!r}")


def _check_model_name(name: str, ref: object) -> None:
    if not _MODEL_NAME.match(name):
        raise ConfigError(
            f"model reference {ref!r}: the name must be 1-200 letters, digits, '-', '_' or '.'"
        )


def _canonical_ref(ref: str) -> tuple[str, str]:
    """("model_version", "name@version") of a reference with a version number."""
    name, at, version = ref.partition("@") if isinstance(ref, str) else ("", "", "")
    _check_model_name(name, ref)
    if not at or not version.isdigit() or int(version) < 1:
        raise ConfigError(
            f"model reference {ref!r} must be name@version with a version number >= 1"
        )
    return "model_version", f"{name}@{int(version)}"


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ConfigError(f"{what} must be a non-empty string of at most 200 characters")
    if any(ord(c) < 32 for c in value):
        raise ConfigError(f"{what} holds a control character: {value!r}")
    return value


def _json_text(value: Mapping[str, Any] | None, what: str) -> str:
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping; received {type(value).__name__}")
    try:
        return json.dumps(dict(value or {}), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be JSON (finite numbers, strings, lists): {err}") from err


def _dataset_row(
    sha256: str, name: str, location: str, columns: Mapping[str, str], rows: int | None
) -> dict[str, Any]:
    _check_id("dataset", sha256)
    _check_name(name, "dataset name")
    if not isinstance(location, str) or len(location) > 2000:
        raise ConfigError("dataset location must be a string of at most 2000 characters")
    if not isinstance(columns, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
    ):
        raise ConfigError("dataset schema must map column names to type names (strings)")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
        raise ConfigError(f"dataset rows must be a whole number >= 0 or None; received {rows!r}")
    return {
        "sha256": sha256,
        "name": name,
        "location": location,
        "schema": _json_text(columns, "dataset schema"),  # column order kept
        "rows": rows,
        "created_at": utc_now(),
    }


def _run_row(
    kind: str,
    name: str,
    by: Identity,
    facets: Mapping[str, Any] | None,
    *,
    status: str,
    started_at: str,
    ended_at: str | None = None,
) -> dict[str, Any]:
    if kind not in RUN_KINDS:
        raise ConfigError(f"run kind must be one of {list(RUN_KINDS)}; received {kind!r}")
    return {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "name": _check_name(name, "run name"),
        "status": status,
        "started_at": started_at,
        "ended_at": ended_at,
        "actor": by.name,
        "facets": canonical_json(json.loads(_json_text(facets, "run facets"))),
    }


def _run_audit(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": row["kind"], "name": row["name"], "status": row["status"]}


def _insert_ignore(conn: Any, table: Any, values: Mapping[str, Any]) -> bool:
    """Insert unless a unique key already holds the row; True when inserted. Concurrent
    recorders of the same node or edge both succeed (one inserts, one skips)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - the registry runs on SQLite or PostgreSQL
        raise ConfigError(f"lineage needs SQLite or PostgreSQL; the database is {dialect}")
    # RETURNING, not rowcount: psycopg reports -1 for ON CONFLICT DO NOTHING
    stmt = stmt.returning(*table.primary_key.columns)
    return conn.execute(stmt).first() is not None


def _insert_dataset(conn: Any, row: Mapping[str, Any], by: Identity) -> list[_AuditEntry]:
    if not _insert_ignore(conn, schema.datasets, row):
        return []
    details = {"name": row["name"], "location": row["location"], "rows": row["rows"]}
    return [(by.name, "lineage.dataset.record", f"dataset:{row['sha256']}", details)]


def _insert_edge(
    conn: Any, edge: tuple[str, str, str, str, str], by: Identity
) -> list[_AuditEntry]:
    src_kind, src_id, relation, dst_kind, dst_id = edge
    if relation not in RELATIONS:
        raise ConfigError(f"relation must be one of {sorted(RELATIONS)}; received {relation!r}")
    sources, targets = RELATIONS[relation]
    if src_kind not in sources or dst_kind not in targets:
        raise ConfigError(
            f"{relation!r} links {'|'.join(sorted(sources))} to {'|'.join(sorted(targets))}; "
            f"received {src_kind} -> {dst_kind}"
        )
    src_id = _node_id(conn, src_kind, src_id)
    dst_id = _node_id(conn, dst_kind, dst_id)
    if (src_kind, src_id) == (dst_kind, dst_id):
        raise ConfigError(f"a node cannot be {relation} itself ({src_kind} {src_id})")
    values = {
        "src_kind": src_kind,
        "src_id": src_id,
        "relation": relation,
        "dst_kind": dst_kind,
        "dst_id": dst_id,
    }
    if not _insert_ignore(conn, schema.lineage_edges, values):
        return []
    return [
        (
            by.name,
            "lineage.link",
            f"{src_kind}:{src_id}",
            {"relation": relation, "dst": f"{dst_kind}:{dst_id}"},
        )
    ]


def _node_id(conn: Any, kind: str, node_id: str) -> str:
    """The id an edge stores, after checking the node can be linked."""
    if kind == "model_version":
        tag = node_id.partition("@")[2] if isinstance(node_id, str) else ""
        if tag and not tag.isdigit():  # an alias: link the version it points at now
            return _resolve_ref(conn, node_id)
        return _canonical_ref(node_id)[1]
    _check_id(kind, node_id)
    if kind == "dataset":
        d = schema.datasets
        if conn.execute(select(d.c.sha256).where(d.c.sha256 == node_id)).first() is None:
            raise DataError(f"dataset {node_id} is not recorded: record_dataset it first")
    elif kind == "run":
        r = schema.runs
        if conn.execute(select(r.c.id).where(r.c.id == node_id)).first() is None:
            raise DataError(f"no run {node_id} in the lineage graph")
    return node_id


def _validate_report(report: Mapping[str, Any]) -> None:
    import jsonschema

    from bastion.report import validate_report_dict

    try:
        validate_report_dict(report)
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        raise DataError(f"not a bastion.report/v1 document: at {where}: {err.message}") from err


def _report_datasets(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One dataset row per distinct content hash the report read; column types are the
    profile's kinds (numeric / categorical)."""
    profiles = report.get("profiles", {})
    rows: dict[str, dict[str, Any]] = {}
    for d in report["datasets"]:
        if d["sha256"] in rows:
            continue
        columns = profiles.get(d["name"], {}).get("columns", {})
        types = {str(c): str(info.get("kind", "unknown")) for c, info in columns.items()}
        rows[d["sha256"]] = _dataset_row(
            d["sha256"], d["name"], d["path"] or "", types, int(d["n_rows"])
        )
    return list(rows.values())


def _model_summary(model: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not model:
        return None
    return {k: model.get(k) for k in ("name", "format", "sha256") if k in model}


def _parse_utc(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as err:
        raise DataError(f"not an ISO 8601 time: {text!r}") from err
    if when.tzinfo is None:
        raise DataError(f"time {text!r} has no time zone")
    return when.astimezone(dt.UTC)


def _format_utc(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc(text: str) -> str:
    """An ISO 8601 time as the registry stores times (UTC, microseconds, ``Z``)."""
    return _format_utc(_parse_utc(text))


# -- OpenLineage ---------------------------------------------------------------------------------


def openlineage_events(
    engine: Engine, *, namespace: str = "bastion", producer: str = PRODUCER
) -> list[dict[str, Any]]:
    """Every recorded run as OpenLineage 2-0-2 RunEvents, in time order.

    A finished run gives a ``START`` and a ``COMPLETE`` (or ``FAIL``) event; a run still
    going gives its ``START`` only. Each event carries the run's inputs and outputs (see the
    module docstring for names and facets). The events validate against the OpenLineage
    client's RunEvent model; custom facets against :func:`load_facets_schema`.

    Parameters:
        engine: the registry database.
        namespace: the OpenLineage namespace of the jobs and datasets.
        producer: URI of the producing software (default: this Bastion release).

    Returns:
        JSON-able dicts, one per event.
    """
    _check_name(namespace, "namespace")
    with engine.connect() as conn:
        runs = conn.execute(
            select(schema.runs).order_by(schema.runs.c.started_at, schema.runs.c.id)
        ).all()
        edges = conn.execute(
            select(
                schema.lineage_edges.c.src_kind,
                schema.lineage_edges.c.src_id,
                schema.lineage_edges.c.relation,
                schema.lineage_edges.c.dst_kind,
                schema.lineage_edges.c.dst_id,
            )
        ).all()
        datasets = {r.sha256: r for r in conn.execute(select(schema.datasets)).all()}
        v, m = schema.model_versions, schema.models
        versions = {
            f"{r.name}@{r.version}": r
            for r in conn.execute(
                select(m.c.name, v.c.version, v.c.manifest_sha256, v.c.report_sha256).select_from(
                    v.join(m, v.c.model_id == m.c.id)
                )
            ).all()
        }
    inputs: dict[str, list[tuple[str, str]]] = {}
    outputs: dict[str, list[tuple[str, str]]] = {}
    evaluated: dict[str, set[str]] = {}  # report -> model versions
    for src_kind, src_id, relation, dst_kind, dst_id in edges:
        if relation == "input_of":
            inputs.setdefault(dst_id, []).append((src_kind, src_id))
        elif relation == "produced":
            outputs.setdefault(src_id, []).append((dst_kind, dst_id))
        elif relation == "evaluated":
            evaluated.setdefault(src_id, set()).add(dst_id)
    for ref, row in versions.items():
        if row.report_sha256:
            evaluated.setdefault(str(row.report_sha256), set()).add(ref)

    def dataset(kind: str, node_id: str) -> dict[str, Any]:
        return _ol_dataset(kind, node_id, namespace, producer, datasets, versions)

    events: list[tuple[str, int, int, dict[str, Any]]] = []
    for order, run in enumerate(runs):
        ins = sorted(set(inputs.get(run.id, [])))
        outs = sorted(set(outputs.get(run.id, [])))
        if run.kind == "gate":  # the gate read the model its report judged
            judged = {m for k, i in outs if k == "report" for m in evaluated.get(i, ())}
            ins = sorted(set(ins) | {("model_version", m) for m in judged})
        base = {
            "run": {"runId": run.id, "facets": _ol_run_facets(run, producer)},
            "job": {
                "namespace": namespace,
                "name": f"{run.kind}.{run.name}",
                "facets": {
                    "jobType": {
                        "_producer": producer,
                        "_schemaURL": _JOB_TYPE_FACET_URL,
                        "processingType": "BATCH",
                        "integration": "BASTION",
                        "jobType": str(run.kind).upper(),
                    }
                },
            },
            "inputs": [dataset(k, i) for k, i in ins],
            "outputs": [dataset(k, i) for k, i in outs],
            "producer": producer,
            "schemaURL": RUN_EVENT_SCHEMA_URL,
        }
        events.append((run.started_at, 0, order, _event("START", run.started_at, base)))
        if run.ended_at is not None:
            end_type = "COMPLETE" if run.status == "completed" else "FAIL"
            events.append((run.ended_at, 1, order, _event(end_type, run.ended_at, base)))
    events.sort(key=lambda e: e[:3])
    return [e[3] for e in events]


def _event(event_type: str, when: str, base: Mapping[str, Any]) -> dict[str, Any]:
    return {"eventType": event_type, "eventTime": when, **json.loads(json.dumps(base))}


def _ol_run_facets(run: Any, producer: str) -> dict[str, Any]:
    return {
        "processing_engine": {
            "_producer": producer,
            "_schemaURL": _ENGINE_FACET_URL,
            "version": __version__,
            "name": "bastion",
        },
        "bastion_run": {
            "_producer": producer,
            "_schemaURL": f"{FACETS_SCHEMA_URL}#/$defs/BastionRunRunFacet",
            "kind": run.kind,
            "status": run.status,
            "actor": run.actor,
            "details": json.loads(run.facets or "{}"),
        },
    }


def _ol_dataset(
    kind: str,
    node_id: str,
    namespace: str,
    producer: str,
    datasets: Mapping[str, Any],
    versions: Mapping[str, Any],
) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    sha: str | None = None
    if kind == "dataset":
        row = datasets.get(node_id)
        name = (row.location or f"memory/{row.name}") if row is not None else f"data/{node_id}"
        version, sha = node_id, node_id
        columns = json.loads(row.schema or "{}") if row is not None else {}
        if columns:
            facets["schema"] = {
                "_producer": producer,
                "_schemaURL": _SCHEMA_FACET_URL,
                "fields": [{"name": c, "type": t} for c, t in columns.items()],
            }
    elif kind == "report":
        name, version, sha = f"reports/{node_id}", node_id, node_id
    else:  # model_version
        model, _, number = node_id.rpartition("@")
        name, version = f"models/{model}", number
        registered = versions.get(node_id)
        if registered is not None:
            sha = str(registered.manifest_sha256)
    facets["version"] = {
        "_producer": producer,
        "_schemaURL": _VERSION_FACET_URL,
        "datasetVersion": version,
    }
    if sha is not None:
        facets["bastion_hash"] = {
            "_producer": producer,
            "_schemaURL": f"{FACETS_SCHEMA_URL}#/$defs/BastionHashDatasetFacet",
            "sha256": sha,
        }
    return {"namespace": namespace, "name": name, "facets": facets}


def iter_jsonl(events: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """Each event as one JSON line (sorted keys, no trailing newline)."""
    for event in events:
        yield json.dumps(event, sort_keys=True, ensure_ascii=False, allow_nan=False)
