"""The user's own code, named in a policy or on the command line as ``package.module:name``
(a model factory, a training function): imported like any Python import, with the working
folder searched too."""

from __future__ import annotations

import importlib
import os
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from pydantic import AfterValidator

from bastion.exceptions import ConfigError

__all__ = ["TrainFnReference", "resolve_reference", "seeded_randomness"]


def _import_from_cwd_too(module_name: str) -> Any:
    """``importlib.import_module``, and when the top-level package is not found, again with
    the working folder at the end of ``sys.path``: the ``bastion`` console script does not
    put it there as ``python -m`` does, and a user's ``mymodels.py`` usually lives there.
    Appended, not prepended, so that it never shadows an installed package."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        cwd = os.getcwd()
        if err.name != module_name.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_name)


def resolve_reference(reference: str, *, what: str) -> Callable[..., Any]:
    """Import ``"package.module:attribute"`` and return the callable it names (``what``
    names the setting in error messages: ``factory``, ``train_fn``).

    Raises:
        ConfigError: the reference is malformed, the module cannot be imported, or the
            attribute is missing or not callable.
    """
    module_name, attr = _parts(reference, what)
    try:
        obj: Any = _import_from_cwd_too(module_name)
    except ImportError as err:
        raise ConfigError(f"{what} {reference!r}: cannot import {module_name!r}: {err}") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {reference!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{what} {reference!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _parts(reference: str, what: str) -> tuple[str, str]:
    """``"package.module:attribute"`` as (module, attribute), or a ConfigError."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"{what} must look like 'package.module:function'; received {reference!r}"
        )
    return module_name, attr


def _train_fn_format(reference: str) -> str:
    _parts(reference, "train_fn")
    return reference


# a policy's ``train_fn``: its form is checked when the policy is read; the import happens
# before a run that uses it (the runner's user_code step), not whenever a policy is read
# (a scan or a release job need not hold the training code)
TrainFnReference = Annotated[str, AfterValidator(_train_fn_format)]


@contextmanager
def seeded_randomness(seed: int) -> Iterator[None]:
    """Run the user's code (a training function) with the process-wide random generators
    seeded, and put them back afterwards: Python's ``random``, numpy's legacy global
    generator (what a scikit-learn estimator left at ``random_state=None`` draws from) and,
    when torch is loaded, torch's CPU generator and, once CUDA is initialised, each CUDA
    device's (before that, a CUDA generator starts from torch's fixed default seed). A recipe
    that fixes none of its seeds then trains the same model on the same data in every run
    with the same seed; one that fixes its own is unaffected. Not seeded: other libraries'
    own generators, and torch in a process where the recipe itself is the first to import it
    (its first call there runs unseeded: import torch at the top of the recipe's module,
    which Bastion imports before the run). Importing torch here for every recipe would cost
    each process, shadow workers included, about a second and 200 MB where the recipe never
    uses it (measured in a review).
    The generators are process-wide: two trainings in threads of one process at once would
    share them (the executors here use processes)."""
    import numpy as np

    py_state = random.getstate()
    np_state = np.random.get_state()
    torch = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    # only where CUDA is up already: asking for its generators would initialise it
    cuda = torch.cuda if torch is not None and torch.cuda.is_initialized() else None
    cuda_states = cuda.get_rng_state_all() if cuda is not None else None
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if torch is not None:
        torch.random.default_generator.manual_seed(seed)
    if cuda is not None:
        cuda.manual_seed_all(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch is not None and torch_state is not None:
            torch.random.set_rng_state(torch_state)
        if cuda is not None and cuda_states is not None:
            cuda.set_rng_state_all(cuda_states)
