"""Retraining for poisoning simulations: the user's function, a cloned estimator, or torch.

A simulation trains twice with the same procedure, once on clean and once on poisoned data,
so that the accuracy drop measures the poison and nothing else. Unset ``random_state``
parameters of a cloned estimator are fixed to the simulation's seed for the same reason.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from bastion._optional import require
from bastion.attacks.poisoning._common import finite_rows, label_array, seed_estimator
from bastion.exceptions import CapabilityError, ConfigError
from bastion.models.base import Capability, ModelAdapter

__all__ = ["TrainFn", "resolve_trainer", "torch_trainer"]

TrainFn = Callable[[Any, np.ndarray], Any]
"""``train(X, y) -> fitted model`` with a ``predict`` method."""


def resolve_trainer(
    model: Any, *, seed: int = 0, epochs: int = 30, learning_rate: float = 1e-3
) -> TrainFn:
    """A training function from what the user has.

    Parameters:
        model: a callable ``(X, y) -> fitted model``; a scikit-learn estimator (fitted or
            not: it is cloned and fitted); a :class:`~bastion.models.sklearn.SklearnAdapter`
            (its ``estimator`` is cloned); or a trainable
            :class:`~bastion.models.torch.TorchAdapter` (its module is copied, its weights
            re-initialised and trained with Adam for ``epochs`` epochs).
        seed: fixes unset ``random_state`` parameters and torch's initialisation; a training
            function runs with the global random generators seeded
            (:func:`~bastion._user_code.seeded_randomness`).
        epochs, learning_rate: torch training only.

    Returns:
        ``train(X, y) -> model with predict``.

    Raises:
        CapabilityError: the model cannot be retrained (an ONNX file, a remote endpoint, a
            bare prediction function).

    Example::

        >>> from sklearn.linear_model import LogisticRegression
        >>> train = resolve_trainer(LogisticRegression())
        >>> train([[0.0], [1.0]], np.array([0, 1])).predict([[0.9]]).tolist()
        [1]
    """
    if isinstance(model, ModelAdapter):
        estimator = getattr(model, "estimator", None)
        if estimator is not None and callable(getattr(estimator, "fit", None)):
            _refuse_frozen(estimator, model.info.name)
            return _estimator_trainer(estimator, seed)
        if model.has(Capability.TRAINABLE) and hasattr(model, "module"):
            return torch_trainer(model, epochs=epochs, learning_rate=learning_rate, seed=seed)
        raise CapabilityError(
            f"poisoning simulation must retrain the model, but model {model.info.name!r} "
            f"({model.info.format}) is neither a scikit-learn estimator nor a trainable torch "
            "module; name a training function (X, y) -> fitted model: train_fn "
            "'package.module:function' (bastion.yaml: checks.poisoning.simulation.train_fn; "
            "bastion attack poisoning --train-fn)"
        )
    if callable(getattr(model, "fit", None)):
        _refuse_frozen(model, type(model).__name__)
        return _estimator_trainer(model, seed)
    if callable(model):
        return _callable_trainer(model, seed)
    raise ConfigError(
        "train_fn must be a callable (X, y) -> fitted model, a scikit-learn estimator or a "
        f"model adapter; received {type(model).__name__}"
    )


def _refuse_frozen(estimator: Any, name: str) -> None:
    """A part that no clone retrains (scikit-learn's ``FrozenEstimator``, the recommended
    way to calibrate a prefit model) would carry the model under test into both
    retrainings: the poisoned copy kept the clean classifier, and a backdoor that works
    (success 1.0 on the bare model) read 0.09, a pass. Such an estimator is refused: any
    part that a clone of it keeps fitted (:func:`~bastion.models.sklearn.kept_fitted_part`)."""
    from sklearn.base import clone

    from bastion.models.sklearn import kept_fitted_part

    try:
        fresh = clone(estimator)
    except TypeError:  # duck-typed: deep-copied and refitted whole (see _estimator_trainer)
        return
    fitted = kept_fitted_part(estimator, fresh)
    if fitted is not None:
        raise CapabilityError(
            f"poisoning simulation must retrain model {name!r}, but a clone of it keeps a "
            f"fitted part ({fitted}), which would carry the clean model into the poisoned "
            "copy; give train_fn 'package.module:function', your recipe that fits every part"
        )


def _estimator_trainer(estimator: Any, seed: int) -> TrainFn:
    from sklearn.base import clone

    def train(X: Any, y: np.ndarray) -> Any:
        try:
            fresh = clone(estimator)
        except TypeError:  # duck-typed estimator without get_params
            fresh = copy.deepcopy(estimator)
        seed_estimator(fresh, seed)
        return fresh.fit(X, y)

    return train


def _callable_trainer(fn: Callable[..., Any], seed: int) -> TrainFn:
    from bastion._user_code import seeded_randomness

    def train(X: Any, y: np.ndarray) -> Any:
        # the clean and the poisoned copy start from the same random state, run after run
        with seeded_randomness(seed):
            fitted = fn(X, y)
        if not callable(getattr(fitted, "predict", None)):
            raise ConfigError(
                "train_fn must return a fitted model with a predict method; it returned "
                f"{type(fitted).__name__}"
            )
        return fitted

    return train


def _reset_of(module: Any) -> Callable[[], None] | None:
    """The method that gives ``module``'s own parameters fresh values (torch's layers name it
    ``reset_parameters``; ``nn.MultiheadAttention`` ``_reset_parameters``), or None."""
    for name in ("reset_parameters", "_reset_parameters"):
        reset = getattr(module, name, None)
        if callable(reset):
            return reset  # type: ignore[no-any-return]
    return None


_KEEPING_HOOKS = ("SpectralNorm", "WeightNorm")


def _check_resettable(module: Any) -> None:
    """Retraining from fresh weights needs every parameter re-initialised: one held by a
    module without a reset method would keep the trained value of the model under test (the
    clean and the poisoned copies would both start from it), so such a module is refused."""
    kept = [
        f"{owner}.{name}" if owner else name
        for owner, sub in module.named_modules()
        if _reset_of(sub) is None
        for name, _ in sub.named_parameters(recurse=False)
    ]
    # torch.nn.utils.spectral_norm / weight_norm keep the trained weight in a parameter
    # (weight_orig, weight_g / weight_v) that reset_parameters() never touches
    kept += [
        f"{owner}.{name}" if owner else name
        for owner, sub in module.named_modules()
        if any(type(h).__name__ in _KEEPING_HOOKS for h in sub._forward_pre_hooks.values())
        for name, _ in sub.named_parameters(recurse=False)
        if name.endswith(("_orig", "_g", "_v"))
    ]
    if kept:
        raise CapabilityError(
            f"cannot retrain the torch model from fresh weights: parameter(s) "
            f"{', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''} belong to modules with no "
            "reset_parameters() (or are a spectral / weight norm's, which it never resets); "
            "give train_fn (your own training recipe) or add reset_parameters() to those "
            "modules"
        )


def torch_trainer(
    adapter: Any,
    *,
    epochs: int = 30,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> TrainFn:
    """Retrain a copy of a torch classifier from fresh weights (Adam, cross-entropy).

    Parameters:
        adapter: a :class:`~bastion.models.torch.TorchAdapter` with a trainable module.
        epochs, learning_rate, batch_size: the optimisation.
        seed: weight initialisation and batch order (torch's global RNG is left untouched).

    Returns:
        ``train(X, y) -> TorchAdapter`` over the retrained copy.

    Raises:
        ConfigError: ``epochs`` or ``batch_size`` below 1, or ``learning_rate`` <= 0.
    """
    if epochs < 1 or batch_size < 1 or learning_rate <= 0:
        raise ConfigError(
            "torch retraining needs epochs >= 1, batch_size >= 1 and learning_rate > 0; "
            f"received {epochs}, {batch_size}, {learning_rate}"
        )
    _check_resettable(adapter.module)

    def train(X: Any, y: np.ndarray) -> Any:
        torch = require("torch", "retraining torch models")
        from bastion.models.torch import TorchAdapter, module_dtype

        classes = adapter.classes_
        labels = label_array(y)
        rows = finite_rows(X, "retraining the torch model")
        if classes is None:
            targets = _column_targets(adapter, labels, rows)
        else:
            lookup = {c: i for i, c in enumerate(classes.tolist())}
            unknown = [v for v in np.unique(labels).tolist() if v not in lookup]
            if unknown:
                raise ConfigError(
                    f"labels {unknown[:5]} are not among the model's classes {classes.tolist()}"
                )
            targets = np.array([lookup[v] for v in labels.tolist()], dtype=np.int64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = copy.deepcopy(adapter.module)
            for sub in module.modules():
                reset = _reset_of(sub)
                if reset is not None:
                    reset()
            device = adapter.device
            xs = torch.as_tensor(rows, device=device)
            dtype = module_dtype(module)  # a float64 module trains on float64 rows
            if dtype is not None:
                xs = xs.to(dtype)
            if adapter.input_shape is not None:
                xs = xs.reshape((xs.shape[0], *adapter.input_shape))
            ys = torch.as_tensor(targets, device=device)
            optimiser = torch.optim.Adam(module.parameters(), lr=learning_rate)
            module.train()
            n = xs.shape[0]
            for _ in range(epochs):
                order = torch.randperm(n, device=device)
                for start in range(0, n, batch_size):
                    batch = order[start : start + batch_size]
                    out = module(xs[batch])
                    if out.ndim == 1 or out.shape[1] == 1:
                        loss = torch.nn.functional.binary_cross_entropy_with_logits(
                            out.reshape(-1), ys[batch].to(out.dtype)
                        )
                    else:
                        loss = torch.nn.functional.cross_entropy(out, ys[batch])
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
            module.eval()
        return TorchAdapter(
            module,
            classes=None if classes is None else classes.tolist(),
            input_shape=adapter.input_shape,
            device=str(adapter.device),
            batch_size=adapter.batch_size,
        )

    return train


def _column_targets(adapter: Any, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Labels as output columns for a module that declares no classes, by the rule the
    black-box attacks use (:func:`~bastion.attacks.evasion._blackbox.label_columns`): whole
    numbers naming one of its columns (0 or 1 for a single logit). Text labels raised a bare
    ValueError, labels 1 and 2 of a two-output module an IndexError from inside torch, and
    fractions were truncated to a column without a word."""
    from bastion.attacks.evasion._blackbox import label_columns

    # one row through the model it copies: the width of its output
    width = int(np.asarray(adapter.predict_proba(rows[:1])).shape[1])
    return label_columns(adapter, labels, width).astype(np.int64)
