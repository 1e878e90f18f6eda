"""Executors: where batch work (shadow models, attack shards) runs.

An :class:`Executor` maps a picklable top-level function over a list of items and returns
the results in the items' order (:meth:`Executor.map`), or hands them over as they finish, so
that a caller keeps the finished ones when a deadline or Ctrl-C stops the rest
(:meth:`Executor.completed`). Two backends ship here:

- ``LocalExecutor(max_workers=1)``: in-process, no pickling, no start-up cost;
- ``LocalExecutor(max_workers=N)``: a ``concurrent.futures.ProcessPoolExecutor`` whose workers
  start with ``forkserver`` (POSIX) or ``spawn``: never a bare ``fork``, which can hang a child
  when the parent already runs OpenMP or BLAS threads (scikit-learn's gradient boosting,
  numpy). Each worker caps its native thread pools so that N workers do not oversubscribe
  the machine's cores.

A distributed backend (Dask, ``--executor tcp://scheduler:8786``) plugs in through
:func:`register_backend`: :func:`get_executor` picks the backend by the spec's URL scheme.
Until one is registered, a ``tcp://`` spec raises :class:`~bastion.exceptions.MissingExtraError`
naming ``bastion[dask]`` when Dask is absent, and :class:`~bastion.exceptions.ConfigError`
otherwise.

Work sent to an executor must be deterministic per item (seeds travel with the items), so
that every backend and every worker count returns the same results.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sys
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from bastion.exceptions import ConfigError

__all__ = [
    "SMALL_DATA_ROWS",
    "Executor",
    "LocalExecutor",
    "WorkerError",
    "available_cpus",
    "check_executor_spec",
    "get_executor",
    "native_threads",
    "register_backend",
    "unsendable_reason",
]

T = TypeVar("T")
R = TypeVar("R")

# seconds a fresh worker pool needs before its first result (interpreter start + imports of
# numpy / scikit-learn in each worker; 3-4 s measured on a loaded 2-core machine)
_POOL_STARTUP_S = 4.0
_REPR_LIMIT = 120
# below this many rows, native thread pools (OpenMP, BLAS) cost more than they bring: on a
# busy 2-core machine a 320-row gradient-boosting fit took 6.5 s with 2 OpenMP threads and
# 0.18 s with one
SMALL_DATA_ROWS = 20_000


class Executor(ABC):
    """Runs ``fn`` over items and returns the results in order.

    Implementations must preserve order, run each item exactly once, and re-raise the first
    failing item's exception with a note naming the item (its index and a short repr).
    """

    @property
    @abstractmethod
    def n_workers(self) -> int:
        """How many items may run at the same time."""

    @property
    def startup_cost_s(self) -> float:
        """Rough seconds of overhead before the first result; callers with little work to
        share run it in-process instead."""
        return 0.0

    @abstractmethod
    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]``, possibly in parallel; order is preserved.

        Parameters
        ----------
        fn:
            A top-level (importable, picklable) function of one argument.
        items:
            The arguments; each must be picklable for out-of-process backends.

        Returns
        -------
        list
            One result per item, in the items' order.

        Raises
        ------
        ConfigError
            ``fn`` cannot be pickled (a lambda or a local function) for a process backend.
        Exception
            The first failing item's own exception, with a note naming the item.
        """

    def cannot_send(self, value: Any) -> str | None:
        """Why ``value`` could not travel to this executor's workers (None: it can). A
        caller with a choice runs such work in-process instead, so that whether it works
        never depends on whether it was parallel. In-process executors take anything."""
        return None

    def completed(
        self, fn: Callable[[T], R], items: Sequence[T], timeout_s: float | None = None
    ) -> Iterator[tuple[int, R]]:
        """``(index, fn(items[index]))`` pairs as the items finish, in any order.

        The iteration ends early, without an error, once ``timeout_s`` seconds have passed
        (the items not yet finished are dropped: the caller sees which indices came back).
        Leaving the loop early (``break``, an exception, Ctrl-C) drops the unfinished items
        too. This default waits for :meth:`map` and cannot stop early: backends that can
        hand results over one by one override it.

        Raises
        ------
        Exception
            As :meth:`map`: a failing item's own exception, with a note naming the item.
        """
        yield from enumerate(self.map(fn, items))


class LocalExecutor(Executor):
    """A process pool on this machine, or in-process work when ``max_workers`` is 1.

    Parameters
    ----------
    max_workers:
        Worker processes; ``None`` uses every CPU available to this process. With 1 (or a
        single item) the work runs in-process.
    mp_context:
        ``"forkserver"``, ``"spawn"`` or ``"fork"``; ``None`` picks ``forkserver`` where the
        platform has it, else ``spawn``.

    Raises
    ------
    ConfigError
        ``max_workers`` < 1 or an unknown ``mp_context``.

    Example::

        >>> LocalExecutor(max_workers=1).map(abs, [-2, 3])
        [2, 3]
    """

    def __init__(self, max_workers: int | None = None, mp_context: str | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ConfigError(f"executor max_workers must be >= 1 or None; received {max_workers}")
        methods = multiprocessing.get_all_start_methods()
        if mp_context is not None and mp_context not in methods:
            raise ConfigError(
                f"executor mp_context must be one of {', '.join(methods)}; received {mp_context!r}"
            )
        self.max_workers = max_workers
        self.mp_context = mp_context

    @property
    def n_workers(self) -> int:
        return self.max_workers if self.max_workers is not None else available_cpus()

    @property
    def startup_cost_s(self) -> float:
        return 0.0 if self.n_workers == 1 or self._method() == "fork" else _POOL_STARTUP_S

    def _method(self) -> str:
        if self.mp_context is not None:
            return self.mp_context
        return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        items = list(items)
        workers = min(self.n_workers, len(items))
        if workers <= 1:
            return [_run_named(fn, i, item) for i, item in enumerate(items)]
        self._check_picklable(fn)
        threads = max(1, available_cpus() // workers)
        rule = _parent_rule()
        context = multiprocessing.get_context(self._method())
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures: list[Future[R]] = [
                pool.submit(_call_limited, fn, item, threads, rule) for item in items
            ]
            results: list[R] = []
            for i, future in enumerate(futures):
                try:
                    results.append(future.result())
                except Exception as err:
                    pool.shutdown(wait=False, cancel_futures=True)
                    unfinished = [j for j in range(i, len(items)) if not _succeeded(futures[j])]
                    _name_failure(err, i, items[i], unfinished)
                    raise
                except KeyboardInterrupt:
                    # Ctrl-C: drop the queued items at once instead of finishing them all
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        return results

    def completed(
        self, fn: Callable[[T], R], items: Sequence[T], timeout_s: float | None = None
    ) -> Iterator[tuple[int, R]]:
        """See :meth:`Executor.completed`. In-process, the deadline is checked between items
        (one running item is not interrupted); in a pool, the workers still running an item
        when the iteration stops are terminated, so a deadline frees the cores at once."""
        items = list(items)
        deadline = None if timeout_s is None else time.monotonic() + max(timeout_s, 0.0)
        workers = min(self.n_workers, len(items))
        if workers <= 1:
            for i, item in enumerate(items):
                if deadline is not None and time.monotonic() >= deadline:
                    return
                yield i, _run_named(fn, i, item)
            return
        self._check_picklable(fn)
        threads = max(1, available_cpus() // workers)
        rule = _parent_rule()
        context = multiprocessing.get_context(self._method())
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        finished = False
        try:
            index = {
                pool.submit(_call_limited, fn, item, threads, rule): i
                for i, item in enumerate(items)
            }
            waiting = set(index)
            while waiting:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                done, waiting = wait(waiting, timeout=left, return_when=FIRST_COMPLETED)
                # in submission order among those done together: the same order on every run
                for future in sorted(done, key=index.__getitem__):
                    i = index[future]
                    try:
                        result = future.result()
                    except Exception as err:
                        unfinished = [index[f] for f in waiting | done if not _succeeded(f)]
                        _name_failure(err, i, items[i], unfinished)
                        raise
                    yield i, result
            finished = True
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:  # a deadline, an error, Ctrl-C or a caller that stopped listening
                _terminate_workers(pool)

    def cannot_send(self, value: Any) -> str | None:
        if self.n_workers <= 1:
            return None
        # a forked worker inherits the parent's __main__ as it is
        return unsendable_reason(value, inherits_main=self._method() == "fork")

    @staticmethod
    def _check_picklable(fn: Callable[..., Any]) -> None:
        try:
            pickle.dumps(fn)
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            name = getattr(fn, "__qualname__", repr(fn))
            raise ConfigError(
                f"executor fn must be a picklable top-level function for a process pool; "
                f"{name!r} is not ({err}); define it at module level or use max_workers=1"
            ) from err

    def __repr__(self) -> str:
        return f"LocalExecutor(max_workers={self.max_workers!r}, mp_context={self.mp_context!r})"


BackendFactory = Callable[[str], Executor]
_BACKENDS: dict[str, BackendFactory] = {}
# scheme -> (module a backend needs, the extra that installs it)
_KNOWN_SCHEMES: dict[str, tuple[str, str]] = {"tcp": ("distributed", "dask")}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Plug a backend in: specs ``"<scheme>://..."`` are built with ``factory(spec)``.

    Example::

        register_backend("tcp", lambda spec: DaskExecutor(spec))
        get_executor("tcp://scheduler:8786")
    """
    _BACKENDS[scheme] = factory


def check_executor_spec(spec: str) -> str:
    """``spec`` stripped, once its form is one :func:`get_executor` reads (``local``,
    ``local:N``, ``<scheme>://...``), without building the executor: a policy's typo is
    refused when the policy is read, not when the check runs (or never, where the check
    took another attack).

    Raises:
        ConfigError: any other form, a worker count below 1, or a scheme no backend is
            registered or known for.
    """
    text = str(spec).strip()
    if text == "local":
        return text
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        # ASCII digits only: "²" is a digit to str.isdigit, and int() refused it
        if not (count.isascii() and count.isdigit()) or int(count) < 1:
            raise ConfigError(
                f"executor spec 'local:N' needs a worker count N >= 1; received {spec!r}"
            )
        return text
    scheme, sep, _ = text.partition("://")
    if not sep or not scheme:
        raise ConfigError(
            f"executor must be 'local', 'local:N' or a URL such as 'tcp://scheduler:8786'; "
            f"received {spec!r}"
        )
    if scheme not in _BACKENDS and scheme not in _KNOWN_SCHEMES:
        known = ", ".join(sorted({"local", *_BACKENDS, *_KNOWN_SCHEMES}))
        raise ConfigError(f"executor {spec!r}: unknown scheme {scheme!r}; known: {known}")
    return text


def get_executor(spec: str | Executor | None = None) -> Executor:
    """The executor a spec names.

    Parameters
    ----------
    spec:
        ``None`` or ``"local"``: a :class:`LocalExecutor` over every available CPU;
        ``"local:N"``: N workers (``"local:1"`` is in-process); ``"<scheme>://..."``: a
        registered backend (``tcp://scheduler:8786`` for Dask, once plugged in); an
        :class:`Executor` is returned as is.

    Returns
    -------
    Executor

    Raises
    ------
    MissingExtraError
        A ``tcp://`` spec and Dask is not installed (names ``pip install 'bastion[dask]'``).
    ConfigError
        An unknown scheme, a malformed ``local:N`` or no backend registered for the scheme.

    Example::

        >>> get_executor("local:1").map(len, ["ab", "c"])
        [2, 1]
    """
    if spec is None or isinstance(spec, Executor):
        return spec if spec is not None else LocalExecutor()
    text = check_executor_spec(spec)
    if text == "local":
        return LocalExecutor()
    if text.startswith("local:"):
        return LocalExecutor(max_workers=int(text.removeprefix("local:")))
    scheme = text.partition("://")[0]
    if scheme in _BACKENDS:
        return _BACKENDS[scheme](text)
    from bastion._optional import require

    module, extra = _KNOWN_SCHEMES[scheme]  # check_executor_spec refused any other scheme
    require(module, f"the {scheme}:// executor")
    raise ConfigError(
        f"executor {spec!r}: no {scheme}:// backend is registered in this version of "
        f"bastion; the bastion[{extra}] backend plugs in with "
        "bastion.executor.register_backend"
    )


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def native_threads(limit: int | None) -> Iterator[None]:
    """Cap native thread pools (OpenMP, BLAS) at ``limit`` inside the block; None: no cap.

    Example::

        with native_threads(1 if n_rows < SMALL_DATA_ROWS else None):
            estimator.fit(X, y)
    """
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=limit):
        yield


class WorkerError(RuntimeError):
    """An item's exception that could not travel back from its worker process (pickle
    cannot rebuild it, e.g. an ``__init__`` with more required arguments than it passes to
    ``Exception``): its class name and message, the worker's traceback as a note. Without
    it the pool reported a dead worker and the item's message was lost."""


def unsendable_reason(value: Any, inherits_main: bool = False) -> str | None:
    """Why ``value`` could not reach a worker process (None: it can): it does not pickle
    (a lambda, a local class), or it refers to a class or function of ``__main__`` that a
    worker started by ``forkserver`` or ``spawn`` cannot find: such a worker runs the main
    file's top level again (as ``__mp_main__``), so a ``__main__`` without a file (a
    notebook, ``python -``, the REPL) has none of them, and a script has only those
    defined outside its ``if __name__ == "__main__":`` block. ``inherits_main``: workers
    are forked and inherit ``__main__`` as it is."""
    import io

    finder = _MainFinder(io.BytesIO())
    try:
        finder.dump(value)
    except Exception as err:  # PicklingError, AttributeError (local objects), TypeError
        return f"cannot be pickled ({type(err).__name__}: {err})"
    if inherits_main or not finder.found:
        return None
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    # python - names its file "<stdin>"; a notebook's __main__ has none
    if not (isinstance(main_file, str) and os.path.isfile(main_file)):
        return (
            f"refers to {finder.found[0]!r}, defined in a __main__ without a file (a notebook "
            "or an interactive session), which a worker process cannot import"
        )
    defined = _top_level_names(main_file)
    for name in finder.found:
        if name.split(".")[0] not in defined:
            return (
                f"refers to {name!r}, which {os.path.basename(main_file)} defines only under "
                "\"if __name__ == '__main__'\", where a worker process does not look"
            )
    return None


class _MainFinder(pickle.Pickler):
    """A pickler that notes the classes and functions of ``__main__`` it meets."""

    def __init__(self, file: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.found: list[str] = []

    def persistent_id(self, obj: Any) -> None:
        if (
            isinstance(obj, type | types.FunctionType)
            and getattr(obj, "__module__", None) == "__main__"
        ):
            self.found.append(getattr(obj, "__qualname__", repr(obj)))
        return None


def _top_level_names(path: str) -> set[str]:
    """Names a file binds when imported (not run as the main program): its top level,
    including conditional and ``try`` blocks, but not an ``if __name__ == "__main__":``
    block. An unreadable file binds nothing known (everything from it reads unsendable)."""
    import ast

    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return set()
    names: set[str] = set()

    def main_test(test: ast.expr) -> str | None:
        """ "==" or "!=" for a comparison of ``__name__`` with "__main__" (either side)."""
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
            return None
        sides = (test.left, test.comparators[0])
        names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
        mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
        if not (names and mains):
            return None
        op = test.ops[0]
        return "==" if isinstance(op, ast.Eq) else "!=" if isinstance(op, ast.NotEq) else None

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, ast.If):
                guard = main_test(node.test)
                if guard != "==":  # an import runs the body unless it is the main block
                    visit(node.body)
                if guard != "!=":
                    visit(node.orelse)
            elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
                if isinstance(node, ast.For | ast.AsyncFor):  # a while binds no target
                    names.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try | ast.With):
                visit(node.body)
                for extra in ("orelse", "finalbody"):
                    visit(getattr(node, extra, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return names


def _portable(err: Exception) -> Exception:
    """``err`` if pickle can carry it back to the parent, else a :class:`WorkerError`."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        import traceback

        carried = WorkerError(f"{type(err).__qualname__}: {err}")
        carried.add_note("".join(traceback.format_exception(err)).rstrip())
        return carried
    return err


def _run_named(fn: Callable[[T], R], index: int, item: T) -> R:
    try:
        return fn(item)
    except Exception as err:
        _name_item(err, index, item)
        raise


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down, dropping queued items, and stop its worker processes now, items
    running or not."""
    stop = getattr(pool, "terminate_workers", None)  # Python 3.14+ (it shuts down too)
    if callable(stop):
        stop()
        return
    # before 3.14 the pool has no way to stop a running item: its own process table, read
    # before shutdown() clears it
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()


def _call_limited(
    fn: Callable[[T], R], item: T, threads: int, rule: tuple[str, ...] | None = None
) -> R:
    """Worker side: run one item with native thread pools capped (no oversubscription), and
    under the parent's network rule when one guarded the call (``rule``: the endpoints it
    allows; a worker is a new interpreter, outside every rule of the parent's)."""
    guard: Any = contextlib.nullcontext()
    if rule is not None:
        from bastion.attacks.network import only_endpoints

        guard = only_endpoints(rule)
    with guard, native_threads(threads):
        try:
            return fn(item)
        except Exception as err:
            carried = _portable(err)
            if carried is err:
                raise
            raise carried from None


def _parent_rule() -> tuple[str, ...] | None:
    """The endpoints the network rule guarding the caller allows, for the workers (None:
    no rule; the network module is imported only where an attack opened one)."""
    module = sys.modules.get("bastion.attacks.network")
    return None if module is None else module.guarded_endpoints()


def _succeeded(future: Future[Any]) -> bool:
    """Whether ``future`` finished with a result (not pending, cancelled or failed)."""
    return future.done() and not future.cancelled() and future.exception() is None


def _name_failure(err: BaseException, index: int, item: Any, pending: list[int]) -> None:
    """Note on a pool item's failure which item failed; for a dead worker (killed, out of
    memory, ``os._exit``), which every pending item's future reports, the items pending
    (from a review: the first of them, item 0, was named for item 1's crash)."""
    if isinstance(err, BrokenProcessPool):
        err.add_note(
            f"executor: a worker process died while items {sorted(pending)[:8]} were "
            "pending; which one it ran is unknown (one worker shows the item's own error)"
        )
        return
    _name_item(err, index, item)


def _name_item(err: BaseException, index: int, item: Any) -> None:
    text = repr(item)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    err.add_note(f"executor item {index}: {text}")
