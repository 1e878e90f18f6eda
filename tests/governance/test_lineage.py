"""Lineage: recording nodes and edges, the upstream tree of a model version, OpenLineage
export validated against the OpenLineage client's RunEvent model, the CLI. Database tests run
on SQLite and, where BASTION_TEST_DATABASE_URL is set, on PostgreSQL (the ``location``
fixture)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import attr
import jsonschema
import pytest
from sqlalchemy import Engine, func, select

from bastion.exceptions import ConfigError, DataError
from bastion.findings import Severity
from bastion.governance import lineage as lineage_module
from bastion.governance import schema
from bastion.governance.access import AccessControl, AccessDeniedError, Identity
from bastion.governance.audit import AuditLog, verify_chain
from bastion.governance.db import Location, dispose, engine_for, resolve_location
from bastion.governance.lineage import (
    FACETS_SCHEMA_URL,
    RUN_EVENT_SCHEMA_URL,
    Lineage,
    load_facets_schema,
    openlineage_events,
    render_tree,
)
from bastion.report import DatasetRef, Report, validate_report_dict
from bastion.verdict import Verdict

ALICE = Identity("alice", "data-scientist")
VIEWER = Identity("victor", "viewer")
NOW = "2026-11-26T05:40:00.000000Z"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


TRAIN, TEST, REPORT = sha("train.csv"), sha("test.csv"), sha("report.json")


@pytest.fixture
def engine(location: Location, monkeypatch: pytest.MonkeyPatch) -> Engine:
    # one fixed clock for the lineage tables, so the rendered tree is exact
    monkeypatch.setattr(lineage_module, "utc_now", lambda: NOW)
    return engine_for(location)


def register(engine: Engine, name: str, version: int, *, report: str | None = None) -> int:
    """A model version row, as the registry writes it (lineage must not need registry.py)."""
    m, v = schema.models, schema.model_versions
    with engine.begin() as conn:
        model_id = conn.execute(select(m.c.id).where(m.c.name == name)).scalar()
        if model_id is None:
            conn.execute(m.insert().values(name=name, created_at=NOW, created_by="alice"))
            model_id = conn.execute(select(m.c.id).where(m.c.name == name)).scalar_one()
        conn.execute(
            v.insert().values(
                model_id=model_id, version=version, manifest_sha256=sha(f"{name}@{version}"),
                report_sha256=report, gate_passed=True if report else None, datasets="{}",
                metrics="{}", created_at=NOW, created_by="alice",
            )
        )  # fmt: skip
        return int(
            conn.execute(
                select(v.c.id).where(v.c.model_id == model_id, v.c.version == version)
            ).scalar_one()
        )


def set_alias(engine: Engine, name: str, alias: str, version_id: int) -> None:
    m = schema.models
    with engine.begin() as conn:
        model_id = conn.execute(select(m.c.id).where(m.c.name == name)).scalar_one()
        conn.execute(
            schema.aliases.insert().values(
                model_id=model_id, alias=alias, version_id=version_id, updated_at=NOW,
                updated_by="alice",
            )
        )  # fmt: skip


def gate_report(passed: bool = True) -> dict[str, Any]:
    """A valid bastion.report/v1 document that read a train and a test file."""
    report = Report(
        project="breast-cancer",
        findings=(),
        verdict=Verdict(passed=passed, fail_on=Severity.HIGH, reasons=(), counts={"pass": 0}),
        created_at="2026-11-26T05:52:33+00:00",
        bastion_version="0.1.0",
        seed=0,
        model={"name": "model.onnx", "format": "onnx", "path": "model.onnx", "sha256": sha("m")},
        datasets=(
            DatasetRef("train", "data/train.csv", TRAIN, 455, 3, "diagnosis"),
            DatasetRef("test", "data/test.csv", TEST, 114, 3, "diagnosis"),
        ),
        timings={"total_s": 3.5},
        profiles={
            "test": {
                "n_rows": 114,
                "columns": {
                    "radius": {"kind": "numeric"},
                    "texture": {"kind": "numeric"},
                    "diagnosis": {"kind": "categorical"},
                },
            }
        },
    ).to_dict()
    validate_report_dict(report)
    return report


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def scenario(engine: Engine) -> dict[str, str]:
    """cancer@1 (no lineage) and cancer@2: trained on train.csv by a recorded training run,
    evaluated by a gate report that read train.csv and test.csv."""
    lineage = Lineage(engine)
    register(engine, "cancer", 1)
    register(engine, "cancer", 2)
    columns = {"radius": "float64", "texture": "float64", "diagnosis": "int64"}
    assert lineage.record_dataset(TRAIN, "train", "data/train.csv", columns, 455, by=ALICE)
    training = lineage.record_training_run(
        "fit-rf", [TRAIN], "cancer@2", {"n_estimators": 100}, by=ALICE
    )
    gate = lineage.record_gate_run(gate_report(), REPORT, "cancer@2", by=ALICE)
    return {"training": training, "gate": gate}


# -- recording ----------------------------------------------------------------------------------


def test_record_dataset_is_idempotent_on_the_hash(engine: Engine) -> None:
    lineage = Lineage(engine)
    assert lineage.record_dataset(TRAIN, "train", "a.csv", {"x": "int64"}, 3, by=ALICE) is True
    assert lineage.record_dataset(TRAIN, "again", "b.csv", {"y": "str"}, 9, by=ALICE) is False
    with engine.connect() as conn:
        rows = conn.execute(select(schema.datasets)).all()
    assert [(r.name, r.location, r.rows, json.loads(r.schema)) for r in rows] == [
        ("train", "a.csv", 3, {"x": "int64"})
    ]
    actions = [e.action for e in AuditLog(engine).events()]
    assert actions == ["lineage.dataset.record"]  # the no-op appended nothing


def test_concurrent_recorders_of_one_dataset_insert_it_once(engine: Engine) -> None:
    lineage = Lineage(engine)
    results: list[bool] = []
    errors: list[BaseException] = []

    def record() -> None:
        try:
            results.append(lineage.record_dataset(TEST, "t", "t.csv", {}, 1, by=ALICE))
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=record) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False, False, False, True]
    assert count(engine, schema.datasets) == 1


@pytest.mark.parametrize(
    ("sha256", "name", "columns", "rows", "message"),
    [
        ("ABC", "d", {}, 1, "sha256"),
        (TRAIN.upper(), "d", {}, 1, "sha256"),
        (TRAIN, "", {}, 1, "dataset name"),
        (TRAIN, "d", {"x": 1}, 1, "schema"),
        (TRAIN, "d", {}, -1, "rows"),
        (TRAIN, "d", {}, True, "rows"),
    ],
    ids=["short-hash", "uppercase-hash", "empty-name", "non-string-type", "negative", "bool"],
)
def test_record_dataset_rejects_malformed_input(
    engine: Engine, sha256: str, name: str, columns: Any, rows: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Lineage(engine).record_dataset(sha256, name, "", columns, rows, by=ALICE)
    assert count(engine, schema.datasets) == 0


def test_run_lifecycle(engine: Engine) -> None:
    lineage = Lineage(engine)
    run_id = lineage.start_run("release", "cancer", by=ALICE, facets={"code": "abc123"})
    with engine.connect() as conn:
        row = conn.execute(select(schema.runs).where(schema.runs.c.id == run_id)).one()
    assert (row.kind, row.status, row.ended_at, row.actor) == ("release", "running", None, "alice")
    assert json.loads(row.facets) == {"code": "abc123"}
    lineage.finish_run(run_id, "failed", by=ALICE)
    with pytest.raises(ConfigError, match="already ended"):
        lineage.finish_run(run_id, "completed", by=ALICE)
    with pytest.raises(DataError, match="no run"):
        lineage.finish_run("00000000-0000-4000-8000-000000000000", "completed", by=ALICE)
    with pytest.raises(ConfigError, match="status"):
        lineage.finish_run(run_id, "aborted", by=ALICE)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="run kind"):
        lineage.start_run("deploy", "x", by=ALICE)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="JSON"):
        lineage.start_run("gate", "x", by=ALICE, facets={"bad": float("nan")})
    with engine.connect() as conn:
        row = conn.execute(select(schema.runs).where(schema.runs.c.id == run_id)).one()
    assert (row.status, row.ended_at) == ("failed", NOW)
    assert [e.action for e in AuditLog(engine).events()] == [
        "lineage.run.start",
        "lineage.run.finish",
    ]


def test_link_checks_relations_kinds_and_nodes(engine: Engine) -> None:
    lineage = Lineage(engine)
    run_id = lineage.start_run("training", "fit", by=ALICE)
    with pytest.raises(ConfigError, match="relation must be one of"):
        lineage.link("dataset", TRAIN, "fed", "run", run_id, by=ALICE)
    with pytest.raises(ConfigError, match="received dataset -> model_version"):
        lineage.link("dataset", TRAIN, "produced", "model_version", "m@1", by=ALICE)
    with pytest.raises(DataError, match="not recorded"):
        lineage.link("dataset", TRAIN, "input_of", "run", run_id, by=ALICE)
    with pytest.raises(ConfigError, match="name@version"):
        lineage.link("run", run_id, "produced", "model_version", "m@0", by=ALICE)
    with pytest.raises(DataError, match="no model 'm'"):
        lineage.link("run", run_id, "produced", "model_version", "m@staging", by=ALICE)
    lineage.record_dataset(TRAIN, "train", "", {}, None, by=ALICE)
    assert lineage.link("dataset", TRAIN, "input_of", "run", run_id, by=ALICE) is True
    assert lineage.link("dataset", TRAIN, "input_of", "run", run_id, by=ALICE) is False
    # an alias is stored as the version it points at; "m@07" as "m@7"
    version_id = register(engine, "m", 7)
    set_alias(engine, "m", "staging", version_id)
    assert lineage.link("run", run_id, "produced", "model_version", "m@staging", by=ALICE)
    assert not lineage.link("run", run_id, "produced", "model_version", "m@07", by=ALICE)
    with engine.connect() as conn:
        edges = conn.execute(
            select(schema.lineage_edges.c.relation, schema.lineage_edges.c.dst_id)
        ).all()
    assert sorted(map(tuple, edges)) == [("input_of", run_id), ("produced", "m@7")]


def test_recording_needs_the_record_permission(engine: Engine) -> None:
    lineage = Lineage(engine)
    with pytest.raises(AccessDeniedError, match=r"lineage\.record"):
        lineage.record_dataset(TRAIN, "train", "", {}, 1, by=VIEWER)
    with pytest.raises(AccessDeniedError):
        lineage.start_run("gate", "x", by=VIEWER)
    with pytest.raises(AccessDeniedError):
        lineage.record_gate_run(gate_report(), REPORT, by=VIEWER)
    assert count(engine, schema.datasets) == count(engine, schema.runs) == 0


def test_gate_run_records_datasets_run_report_and_edges(
    engine: Engine, scenario: dict[str, str]
) -> None:
    gate = scenario["gate"]
    with engine.connect() as conn:
        run = conn.execute(select(schema.runs).where(schema.runs.c.id == gate)).one()
        edges = conn.execute(
            select(
                schema.lineage_edges.c.src_kind, schema.lineage_edges.c.src_id,
                schema.lineage_edges.c.relation, schema.lineage_edges.c.dst_kind,
                schema.lineage_edges.c.dst_id,
            )
        ).all()  # fmt: skip
        test = conn.execute(select(schema.datasets).where(schema.datasets.c.sha256 == TEST)).one()
    # timed from the report: created_at minus timings.total_s
    assert (run.kind, run.name, run.status) == ("gate", "breast-cancer", "completed")
    assert (run.started_at, run.ended_at) == (
        "2026-11-26T05:52:29.500000Z",
        "2026-11-26T05:52:33.000000Z",
    )
    assert json.loads(run.facets)["report"]["passed"] is True
    assert {tuple(e) for e in edges} >= {
        ("dataset", TRAIN, "input_of", "run", gate),
        ("dataset", TEST, "input_of", "run", gate),
        ("run", gate, "produced", "report", REPORT),
        ("report", REPORT, "evaluated", "model_version", "cancer@2"),
    }
    # the column types of a dataset first seen in a report come from its profile
    assert json.loads(test.schema) == {
        "radius": "numeric",
        "texture": "numeric",
        "diagnosis": "categorical",
    }
    assert (test.name, test.location, test.rows) == ("test", "data/test.csv", 114)
    # recording the same report again records no second run
    again = Lineage(engine).record_gate_run(gate_report(), REPORT, "cancer@2", by=ALICE)
    assert again == gate
    assert count(engine, schema.runs) == 2
    assert verify_chain(engine).ok


def test_concurrent_recorders_of_one_report_record_one_run(engine: Engine) -> None:
    lineage = Lineage(engine)
    run_ids: list[str] = []
    errors: list[BaseException] = []

    def record() -> None:
        try:
            run_ids.append(lineage.record_gate_run(gate_report(), REPORT, by=ALICE))
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=record) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(run_ids)) == 1
    assert count(engine, schema.runs) == 1
    assert count(engine, schema.datasets) == 2


def test_gate_run_is_atomic(engine: Engine) -> None:
    lineage = Lineage(engine)
    broken = gate_report()
    del broken["verdict"]
    with pytest.raises(DataError, match=r"bastion\.report/v1"):
        lineage.record_gate_run(broken, REPORT, by=ALICE)
    # an unknown alias fails after the run and datasets were written: all of it rolls back
    with pytest.raises(DataError, match="no model 'ghost'"):
        lineage.record_gate_run(gate_report(), REPORT, "ghost@production", by=ALICE)
    assert count(engine, schema.runs) == count(engine, schema.datasets) == 0
    assert count(engine, schema.lineage_edges) == 0
    assert list(AuditLog(engine).events()) == []


# -- the tree ------------------------------------------------------------------------------------


def test_tree_shows_the_datasets_and_report_of_a_model_version(
    engine: Engine, scenario: dict[str, str]
) -> None:
    tree = Lineage(engine).tree("cancer@2")
    gate, training = scenario["gate"], scenario["training"]
    expected = f"""\
cancer@2  model version, registered 2026-11-26 by alice
├── evaluated by: report {REPORT[:12]}  gate passed
│   └── produced by: gate run breast-cancer  {gate[:8]}  completed 2026-11-26 05:52  by alice
│       ├── input: dataset test  {TEST[:12]}  114 rows  data/test.csv
│       └── input: dataset train  {TRAIN[:12]}  455 rows  data/train.csv
└── produced by: training run fit-rf  {training[:8]}  completed 2026-11-26 05:40  by alice
    └── input: dataset train  {TRAIN[:12]}  455 rows  data/train.csv  (shown above)
"""
    assert render_tree(tree) == expected
    nodes = {(n.kind, n.id) for n in tree.walk()}
    assert {("dataset", TRAIN), ("dataset", TEST), ("report", REPORT)} <= nodes
    as_dict = tree.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["children"][1]["details"]["facets"] == {"params": {"n_estimators": 100}}


def test_tree_resolves_aliases_and_the_latest_version(engine: Engine) -> None:
    lineage = Lineage(engine)
    register(engine, "cancer", 1)
    v2 = register(engine, "cancer", 2, report=REPORT)  # the registry's own report column
    set_alias(engine, "cancer", "production", v2)
    for ref in ("cancer@2", "cancer@production", "cancer"):
        tree = lineage.tree(ref)
        assert tree.id == "cancer@2"
        assert [(c.kind, c.id, c.relation) for c in tree.children] == [
            ("report", REPORT, "evaluated")
        ]
    assert lineage.tree("cancer@1").children == ()
    with pytest.raises(DataError, match="no model 'dog'"):
        lineage.tree("dog")
    with pytest.raises(DataError, match="no alias @staging"):
        lineage.tree("cancer@staging")
    with pytest.raises(DataError, match="no model version cancer@9"):
        lineage.tree("cancer@9")
    with pytest.raises(ConfigError, match="model reference"):
        lineage.tree("bad name@1")


def test_tree_of_an_unregistered_version_with_lineage_and_a_cycle(engine: Engine) -> None:
    lineage = Lineage(engine)
    run_id = lineage.start_run("release", "r", by=ALICE)
    lineage.link("run", run_id, "produced", "model_version", "m@1", by=ALICE)
    lineage.link("model_version", "m@1", "input_of", "run", run_id, by=ALICE)  # a cycle
    lineage.record_dataset(TRAIN, "train", "", {}, None, by=ALICE)
    lineage.link("model_version", "m@1", "trained_on", "dataset", TRAIN, by=ALICE)
    tree = lineage.tree("m@1")
    assert tree.details == {"registered": False}
    text = render_tree(tree)
    assert text.splitlines() == [
        "m@1  model version, not registered",
        f"├── produced by: release run r  {run_id[:8]}  running 2026-11-26 05:40  by alice",
        "│   └── input: m@1  model version, not registered  (shown above)",
        f"└── trained on: dataset train  {TRAIN[:12]}",
    ]


# -- OpenLineage ----------------------------------------------------------------------------------


class InvalidEventError(ValueError):
    """An exported event that the OpenLineage client's model or our facet schema rejects."""


def _versionless(url: str) -> str:
    return re.sub(r"/spec/facets/\d+-\d+-\d+/", "/spec/facets/*/", url)


def _pruned(value: Any) -> Any:
    """Without empty lists and objects (the client writes its defaults, we leave them out)."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    if isinstance(value, str) and "/spec/facets/" in value:
        return _versionless(value)
    return value


@cache
def _client_classes() -> dict[tuple[str, str], type]:
    """Facet key -> the client's class (standard facets) or ours (custom facets, defined as
    the OpenLineage docs define custom facets: attrs subclasses of the facet base)."""
    pytest.importorskip("openlineage.client")
    from openlineage.client.event_v2 import RunEvent  # noqa: F401
    from openlineage.client.generated.base import DatasetFacet, RunFacet
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
    from openlineage.client.generated.job_type_job import JobTypeJobFacet
    from openlineage.client.generated.processing_engine_run import ProcessingEngineRunFacet
    from openlineage.client.generated.schema_dataset import SchemaDatasetFacet

    sha_re = attr.validators.matches_re(r"^[0-9a-f]{64}$")

    @attr.define
    class BastionHashDatasetFacet(DatasetFacet):  # type: ignore[misc]
        sha256: str = attr.field(validator=sha_re)

        @staticmethod
        def _get_schema() -> str:
            return f"{FACETS_SCHEMA_URL}#/$defs/BastionHashDatasetFacet"

    @attr.define
    class BastionRunRunFacet(RunFacet):  # type: ignore[misc]
        kind: str
        status: str
        actor: str
        details: dict[str, Any]

        @staticmethod
        def _get_schema() -> str:
            return f"{FACETS_SCHEMA_URL}#/$defs/BastionRunRunFacet"

    return {
        ("dataset", "schema"): SchemaDatasetFacet,
        ("dataset", "version"): DatasetVersionDatasetFacet,
        ("dataset", "bastion_hash"): BastionHashDatasetFacet,
        ("run", "processing_engine"): ProcessingEngineRunFacet,
        ("run", "bastion_run"): BastionRunRunFacet,
        ("job", "jobType"): JobTypeJobFacet,
    }


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise InvalidEventError(f"{where}: unknown fields {sorted(unknown)}")


def _facets(owner: str, facets: Mapping[str, Any], classes: dict[tuple[str, str], type]) -> Any:
    from openlineage.client.generated.schema_dataset import (
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )

    built = {}
    for key, body in facets.items():
        cls = classes.get((owner, key))
        if cls is None:
            raise InvalidEventError(f"{owner} facet {key!r} is not one we know")
        body = dict(body)
        producer, url = body.pop("_producer"), body.pop("_schemaURL")
        _only(body, {a.alias for a in attr.fields(cls) if a.init}, f"{owner} facet {key}")
        if cls is SchemaDatasetFacet:
            body["fields"] = [SchemaDatasetFacetFields(**f) for f in body["fields"]]
        facet = cls(producer=producer, **body)
        expected = facet._schemaURL
        if _versionless(url) != _versionless(expected):
            raise InvalidEventError(f"{owner} facet {key}: _schemaURL {url} is not {expected}")
        name = expected.rsplit("/", 1)[-1]
        if "/spec/facets/" in url and not re.fullmatch(
            rf"https://openlineage\.io/spec/facets/\d+-\d+-\d+/{name}\.json#/\$defs/{name}", url
        ):
            raise InvalidEventError(f"{owner} facet {key}: malformed _schemaURL {url}")
        built[key] = facet
    return built


def to_client_event(data: Mapping[str, Any]) -> Any:
    """The client's RunEvent built from an exported event; raises InvalidEventError when a
    field is missing, unknown or invalid (the client checks the uuid and the time)."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )

    classes = _client_classes()
    try:
        _only(data, {"eventType", "eventTime", "run", "job", "inputs", "outputs", "producer",
                     "schemaURL"}, "event")  # fmt: skip
        _only(data["run"], {"runId", "facets"}, "run")
        _only(data["job"], {"namespace", "name", "facets"}, "job")
        datasets = {"inputs": [], "outputs": []}
        for side, cls in (("inputs", InputDataset), ("outputs", OutputDataset)):
            for d in data.get(side, []):
                _only(d, {"namespace", "name", "facets"}, side)
                facets = _facets("dataset", d.get("facets", {}), classes)
                datasets[side].append(cls(namespace=d["namespace"], name=d["name"], facets=facets))
        event = RunEvent(
            eventType=RunState(data["eventType"]),
            eventTime=data["eventTime"],
            producer=data["producer"],
            run=Run(runId=data["run"]["runId"], facets=_facets("run", data["run"]["facets"],
                                                               classes)),
            job=Job(namespace=data["job"]["namespace"], name=data["job"]["name"],
                    facets=_facets("job", data["job"].get("facets", {}), classes)),
            inputs=datasets["inputs"],
            outputs=datasets["outputs"],
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidEventError(f"not a valid RunEvent: {type(err).__name__}: {err}") from err
    if data["schemaURL"] != event.schemaURL:
        raise InvalidEventError(f"schemaURL {data['schemaURL']} is not {event.schemaURL}")
    return event


def validate_event(data: Mapping[str, Any]) -> None:
    """Strict: the client's model accepts the event and writes it back unchanged (Serde), and
    each custom facet follows our shipped facet schema."""
    from openlineage.client.serde import Serde

    event = to_client_event(data)
    written = json.loads(Serde.to_json(event))
    if _pruned(written) != _pruned(dict(data)):
        raise InvalidEventError("the client writes the event differently")
    facet_schema = load_facets_schema()
    facets = [*data["run"]["facets"].items()]
    for d in [*data.get("inputs", []), *data.get("outputs", [])]:
        facets += d.get("facets", {}).items()
    for key, body in facets:
        if key.startswith("bastion_"):
            base, _, pointer = body["_schemaURL"].partition("#/$defs/")
            if base != FACETS_SCHEMA_URL:
                raise InvalidEventError(f"facet {key}: _schemaURL {base} is not ours")
            jsonschema.validate(
                body, {"$ref": f"#/$defs/{pointer}", "$defs": facet_schema["$defs"]}
            )


@pytest.fixture
def events(engine: Engine, scenario: dict[str, str]) -> list[dict[str, Any]]:
    lineage = Lineage(engine)
    failed = lineage.start_run("release", "cancer", by=ALICE)
    lineage.link("report", REPORT, "input_of", "run", failed, by=ALICE)
    lineage.link("run", failed, "produced", "model_version", "cancer@3", by=ALICE)
    lineage.finish_run(failed, "failed", by=ALICE)
    running = lineage.start_run("training", "still-going", by=ALICE)
    scenario |= {"failed": failed, "running": running}
    return openlineage_events(engine, producer="https://example.org/bastion-test")


def test_openlineage_events_validate_against_the_client_model(
    events: list[dict[str, Any]],
) -> None:
    pytest.importorskip("openlineage.client")
    assert len(events) == 7  # START and an end for three runs, START only for the running one
    for event in events:
        validate_event(event)
    assert all(e["schemaURL"] == RUN_EVENT_SCHEMA_URL for e in events)
    assert (
        RUN_EVENT_SCHEMA_URL == "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
    )


def test_openlineage_events_carry_each_runs_inputs_outputs_and_facets(
    events: list[dict[str, Any]], scenario: dict[str, str]
) -> None:
    by_run: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_run.setdefault(event["run"]["runId"], []).append(event)
    assert {k: [e["eventType"] for e in v] for k, v in by_run.items()} == {
        scenario["training"]: ["START", "COMPLETE"],
        scenario["gate"]: ["START", "COMPLETE"],
        scenario["failed"]: ["START", "FAIL"],
        scenario["running"]: ["START"],
    }
    times = [e["eventTime"] for e in events]
    assert times == sorted(times)
    start, complete = by_run[scenario["gate"]]
    assert (start["eventTime"], complete["eventTime"]) == (
        "2026-11-26T05:52:29.500000Z",
        "2026-11-26T05:52:33.000000Z",
    )
    assert complete["job"]["name"] == "gate.breast-cancer"
    inputs = {d["name"]: d for d in complete["inputs"]}
    # the gate read both files and the model its report judged; it wrote the report
    assert sorted(inputs) == ["data/test.csv", "data/train.csv", "models/cancer"]
    assert [d["name"] for d in complete["outputs"]] == [f"reports/{REPORT}"]
    train = inputs["data/train.csv"]["facets"]
    assert train["schema"]["fields"] == [
        {"name": "radius", "type": "float64"},
        {"name": "texture", "type": "float64"},
        {"name": "diagnosis", "type": "int64"},
    ]
    assert train["version"]["datasetVersion"] == TRAIN
    assert train["bastion_hash"]["sha256"] == TRAIN
    model = inputs["models/cancer"]["facets"]
    assert model["version"]["datasetVersion"] == "2"
    assert model["bastion_hash"]["sha256"] == sha("cancer@2")  # the manifest's hash
    run_facet = complete["run"]["facets"]["bastion_run"]
    assert run_facet["details"]["report"]["sha256"] == REPORT
    assert (run_facet["kind"], run_facet["actor"]) == ("gate", "alice")
    fail = by_run[scenario["failed"]][1]
    assert [d["name"] for d in fail["inputs"]] == [f"reports/{REPORT}"]
    # cancer@3 is not registered: a version facet, no hash
    assert fail["outputs"] == [
        {
            "namespace": "bastion",
            "name": "models/cancer",
            "facets": {
                "version": {
                    "_producer": "https://example.org/bastion-test",
                    "_schemaURL": lineage_module._VERSION_FACET_URL,
                    "datasetVersion": "3",
                }
            },
        }
    ]
    for event in events:
        for facet in event["run"]["facets"].values():
            assert facet["_producer"] == "https://example.org/bastion-test"


def test_an_invalid_event_fails_validation(events: list[dict[str, Any]]) -> None:
    pytest.importorskip("openlineage.client")
    good = events[-1]
    validate_event(good)

    no_run_id = json.loads(json.dumps(good))
    del no_run_id["run"]["runId"]
    with pytest.raises(InvalidEventError, match="runId"):
        validate_event(no_run_id)

    bad_uuid = json.loads(json.dumps(good))
    bad_uuid["run"]["runId"] = "run-1"
    with pytest.raises(InvalidEventError):
        validate_event(bad_uuid)

    no_time = json.loads(json.dumps(good))
    no_time["eventTime"] = "2026-11-26"  # a date without a time
    with pytest.raises(InvalidEventError):
        validate_event(no_time)

    gate_event = next(e for e in events if e["job"]["name"].startswith("gate."))
    no_producer = json.loads(json.dumps(gate_event))
    del no_producer["inputs"][0]["facets"]["bastion_hash"]["_producer"]
    with pytest.raises(InvalidEventError, match="_producer"):
        validate_event(no_producer)

    wrong_url = json.loads(json.dumps(gate_event))
    wrong_url["inputs"][0]["facets"]["schema"]["_schemaURL"] = "https://example.org/x.json"
    with pytest.raises(InvalidEventError, match="_schemaURL"):
        validate_event(wrong_url)

    extra = json.loads(json.dumps(gate_event))
    extra["run"]["facets"]["bastion_run"]["surprise"] = 1
    with pytest.raises(InvalidEventError, match="surprise"):
        validate_event(extra)

    bad_hash = json.loads(json.dumps(gate_event))
    bad_hash["outputs"][0]["facets"]["bastion_hash"]["sha256"] = "xyz"
    with pytest.raises(InvalidEventError):
        validate_event(bad_hash)


def test_the_facet_schema_rejects_a_facet_without_producer() -> None:
    facet_schema = load_facets_schema()
    jsonschema.Draft202012Validator.check_schema(facet_schema)
    ref = {"$ref": "#/$defs/BastionHashDatasetFacet", "$defs": facet_schema["$defs"]}
    good = {"_producer": "https://x", "_schemaURL": "https://y", "sha256": TRAIN}
    jsonschema.validate(good, ref)
    for broken in ({k: v for k, v in good.items() if k != "_producer"}, {**good, "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, ref)


# -- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Engine]]:
    """`bastion` with the lineage group registered, on a fresh SQLite registry."""
    from bastion.cli import lineage as lineage_cli
    from bastion.cli import main

    if not any(g.name == "lineage" for g in main.app.registered_groups):
        # register the group for this test only (the original list comes back afterwards)
        monkeypatch.setattr(main.app, "registered_groups", list(main.app.registered_groups))
        main.app.add_typer(lineage_cli.app, name="lineage")
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    for name in ("BASTION_DATABASE_URL", "BASTION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(lineage_module, "utc_now", lambda: NOW)
    location = resolve_location()
    try:
        yield main.run, engine_for(location)
    finally:
        dispose(location)


def test_cli_show_and_export(
    cli: tuple[Any, Engine], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, engine = cli
    register(engine, "cancer", 2)
    Lineage(engine).record_gate_run(gate_report(), REPORT, "cancer@2", by=ALICE)
    capsys.readouterr()

    assert run(["lineage", "show", "cancer@2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cancer@2  model version, registered 2026-11-26 by alice\n")
    assert f"input: dataset test  {TEST[:12]}  114 rows  data/test.csv" in out

    assert run(["lineage", "show", "cancer", "--format", "json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert (tree["id"], tree["children"][0]["id"]) == ("cancer@2", REPORT)

    assert run(["lineage", "show", "cancer@5"]) == 2
    assert "error: no model version cancer@5" in capsys.readouterr().err

    target = tmp_path / "out" / "events.jsonl"
    assert run(["lineage", "export", "--format", "openlineage", "--out", str(target)]) == 0
    assert "wrote 2 OpenLineage events" in capsys.readouterr().err
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["eventType"] for line in lines] == ["START", "COMPLETE"]
    assert run(["lineage", "export", "--namespace", "ci"]) == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["job"]["namespace"] for e in streamed] == ["ci", "ci"]
    pytest.importorskip("openlineage.client")
    for line in lines:
        validate_event(json.loads(line))


def test_cli_record_training_and_tokens(
    cli: tuple[Any, Engine], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    run, engine = cli
    data = tmp_path / "diabetes.csv"
    data.write_text("age,sex,target\n50,1,0\n61,0,1\n", encoding="utf-8")
    access = AccessControl(engine)
    admin_token = access.add_user("root", "admin", by=access.local_identity())
    viewer_token = access.add_user("vic", "viewer", by=Identity("root", "admin"))
    capsys.readouterr()

    args = ["lineage", "record-training", "--name", "fit", "--data", str(data),
            "--model", "risk@1", "--param", "C=0.5", "--param", "solver=lbfgs"]  # fmt: skip
    assert run(args) == 2  # the registry has users: a token is needed
    assert "pass an API token" in capsys.readouterr().err
    assert run([*args, "--token", viewer_token]) == 2
    assert "may not lineage.record" in capsys.readouterr().err
    monkeypatch.setenv("BASTION_TOKEN", admin_token)
    assert run(args) == 0
    run_id = capsys.readouterr().out.strip()

    with engine.connect() as conn:
        row = conn.execute(select(schema.runs).where(schema.runs.c.id == run_id)).one()
        ds = conn.execute(select(schema.datasets)).one()
    assert (row.kind, row.name, row.actor) == ("training", "fit", "root")
    assert json.loads(row.facets) == {"params": {"C": 0.5, "solver": "lbfgs"}}
    assert ds.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert (ds.name, ds.rows, ds.location) == ("diabetes", 2, str(data.absolute()))
    assert json.loads(ds.schema) == {"age": "int64", "sex": "int64", "target": "int64"}

    monkeypatch.setenv("BASTION_TOKEN", viewer_token)  # reading needs lineage.read only
    assert run(["lineage", "show", "risk@1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "risk@1  model version, not registered",
        f"└── produced by: training run fit  {run_id[:8]}  completed 2026-11-26 05:40  by root",
        f"    └── input: dataset diabetes  {ds.sha256[:12]}  2 rows  {data.absolute()}",
    ]
    assert run([*args[:-4], "--param", "oops"]) == 2
    assert "--param must be KEY=VALUE" in capsys.readouterr().err
