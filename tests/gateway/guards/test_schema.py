"""Requests are validated against the release's signed feature schema: 422 names the field."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bastion.gateway.guards.auth import GuardRejectedError
from bastion.gateway.guards.schema import InputSchema
from bastion.gateway.oip import create_oip_app, run_in_thread
from bastion.models.sklearn import SklearnAdapter

REPORT: dict[str, Any] = {
    "datasets": [{"name": "train", "features": ["age", "visits", "score"]}],
    "feature_schema": {
        "inferred": False,
        "declared": ["age", "visits"],
        "columns": {
            "age": {"kind": "numeric", "min": 0, "max": 120},
            "visits": {"kind": "integer", "min": 0, "max": None},
            "score": {"kind": "numeric", "min": -1.0, "max": 1.0},  # inferred: not a contract
        },
    },
}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([40, 2], "expected 3 columns (age, visits, score); received 2"),
        ([40, 2.5, 0.0], "column 'visits', row 1: 2.5 is not a whole number"),
        ([130, 2, 0.0], "column 'age', row 1: 130.0 is outside the declared range [0.0, 120.0]"),
        ([40, -1, 0.0], "column 'visits', row 1: -1.0 is outside the declared range [0.0, inf]"),
        ([float("nan"), 1, 0.0], "column 'age', row 1: nan is not finite"),
    ],
)
def test_bad_rows_are_named(row: list[float], message: str) -> None:
    schema = InputSchema.from_report(REPORT)
    assert schema is not None
    good = [30, 1, 0.5]
    X = np.array([good, row]) if len(row) == 3 else np.array([good[:2], row])
    with pytest.raises(GuardRejectedError) as err:
        schema.check(X)
    assert err.value.status == 422
    assert err.value.message == message


def test_inferred_bounds_are_not_a_contract_and_no_schema_means_none() -> None:
    schema = InputSchema.from_report(REPORT)
    assert schema is not None
    schema.check(
        np.array([[30, 1, 9.0]])
    )  # score beyond its inferred range: the OOD detector's call
    assert InputSchema.from_report({"datasets": [{"name": "train"}]}) is None


def test_the_gateway_answers_422() -> None:
    pytest.importorskip("fastapi")
    X = np.array([[30, 1, 0.1], [60, 3, -0.2], [20, 0, 0.3], [80, 5, 0.0]])
    model = SklearnAdapter(LogisticRegression().fit(X, [0, 1, 0, 1]))
    app = create_oip_app({"m": model}, input_schema=InputSchema.from_report(REPORT))
    body = {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64",
                        "data": [130, 1, 0.0]}]}  # fmt: skip
    with run_in_thread(app) as url:
        bad = httpx.post(f"{url}/v2/models/m/infer", json=body)
        assert bad.status_code == 422
        assert "column 'age', row 0" in bad.json()["error"]
        body["inputs"][0]["data"] = [30, 1, 0.0]
        assert httpx.post(f"{url}/v2/models/m/infer", json=body).status_code == 200
