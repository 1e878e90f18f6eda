"""Helpers for the data-check tests: a CheckContext builder and the breast-cancer frame."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import pytest

from bastion.checks import CheckContext
from bastion.data.dataset import Dataset
from bastion.data.schema import FeatureSchema

ContextFactory = Callable[..., CheckContext]


def build_context(
    frame: pd.DataFrame,
    *,
    name: str = "train",
    target: str | None = None,
    reference: pd.DataFrame | None = None,
    schema: FeatureSchema | None = None,
    infer_schema: bool = True,
    expected_sha256: Mapping[str, str] | None = None,
    non_features: Sequence[str] = (),
    profile: bool = True,
    seed: int = 0,
) -> CheckContext:
    """A context as the runner builds it for one dataset-scope check.

    ``reference`` (train) defaults to ``frame`` itself; the schema is ``schema`` merged over
    one inferred from the reference (unless ``infer_schema`` is false).
    """
    ds = Dataset.from_frame(frame, name=name, target=target, non_features=non_features)
    ref_frame = frame if reference is None else reference
    ref = (
        ds
        if reference is None
        else Dataset.from_frame(ref_frame, name="train", target=target, non_features=non_features)
    )
    exclude = tuple(c for c in (target, *non_features) if c)
    declared = schema or FeatureSchema()
    merged = (
        declared.merged_over(FeatureSchema.infer(ref_frame, exclude=exclude))
        if infer_schema
        else declared
    )
    ctx = CheckContext(
        seed=seed,
        subject=f"dataset:{name}",
        dataset=ds,
        reference=ref,
        schema=merged,
        expected_sha256=dict(expected_sha256 or {}),
    )
    if profile:
        from bastion.data.profile import Profile

        ctx.profile = Profile.from_frame(ds.frame, seed=seed)
        ctx.reference_profile = (
            ctx.profile if reference is None else Profile.from_frame(ref.frame, seed=seed)
        )
    return ctx


@pytest.fixture
def make_ctx() -> ContextFactory:
    """The :func:`build_context` helper, as a fixture."""
    return build_context


@pytest.fixture(scope="session")
def cancer() -> pd.DataFrame:
    """Breast cancer Wisconsin (569 x 30 numeric features + ``target``), shipped with sklearn."""
    from sklearn.datasets import load_breast_cancer

    bunch: Any = load_breast_cancer(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    return frame
