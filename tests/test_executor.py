"""The executor: order kept, failures name their item, in-process and process-pool backends
agree, and the distributed plug point names the extra to install."""

from __future__ import annotations

import math
import multiprocessing
import operator
import time
from pathlib import Path

import pytest

from bastion.exceptions import ConfigError, MissingExtraError
from bastion.executor import (
    Executor,
    LocalExecutor,
    WorkerError,
    available_cpus,
    get_executor,
    register_backend,
    unsendable_reason,
)

ITEMS = [9.0, 1.0, 16.0, 4.0, 0.0, 25.0]


def test_in_process_map_keeps_order() -> None:
    assert LocalExecutor(max_workers=1).map(math.sqrt, ITEMS) == [3.0, 1.0, 4.0, 2.0, 0.0, 5.0]


def test_process_pool_keeps_order_and_equals_in_process() -> None:
    # stdlib functions pickle by reference, so spawn / forkserver workers can import them
    pooled = LocalExecutor(max_workers=2).map(math.sqrt, ITEMS)
    assert pooled == LocalExecutor(max_workers=1).map(math.sqrt, ITEMS)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_item_raises_its_own_exception_naming_the_item(workers: int) -> None:
    with pytest.raises(ValueError, match="math domain error") as info:
        LocalExecutor(max_workers=workers).map(math.sqrt, [4.0, -1.0, 9.0])
    assert "executor item 1: -1.0" in info.value.__notes__


@pytest.mark.parametrize("workers", [1, 2])
def test_completed_hands_every_result_over_with_its_index(workers: int) -> None:
    pairs = list(LocalExecutor(max_workers=workers, mp_context="fork").completed(math.sqrt, ITEMS))
    assert sorted(i for i, _ in pairs) == list(range(len(ITEMS)))
    assert [r for _, r in sorted(pairs)] == LocalExecutor(max_workers=1).map(math.sqrt, ITEMS)


def _dies_on_one(i: int) -> int:
    if i == 1:
        import os

        time.sleep(1.0)  # the others finish first
        os._exit(3)  # a worker killed (out of memory, say): no exception to pickle back
    return i


def test_a_dead_worker_names_the_pending_items_not_the_first() -> None:
    """Every pending future fails when a worker dies: naming the first of them blamed item
    0 for item 1's crash (from a review)."""
    from concurrent.futures.process import BrokenProcessPool

    pool = LocalExecutor(max_workers=2, mp_context="fork")
    for run in (
        lambda: pool.map(_dies_on_one, [0, 1, 2, 3]),
        lambda: list(pool.completed(_dies_on_one, [0, 1, 2, 3])),
    ):
        with pytest.raises(BrokenProcessPool) as info:
            run()
        notes = info.value.__notes__
        assert not any(note.startswith("executor item") for note in notes)
        # the items that finished are not among those named (a review: all four were)
        assert "a worker process died while items [1] were pending" in notes[-1], notes


def test_a_deadline_keeps_the_finished_items_and_stops_the_workers_at_once() -> None:
    # two quick items and two that would sleep 30 s: the iteration ends at the deadline and
    # the workers running the long ones are terminated, not waited for
    started = time.monotonic()
    pool = LocalExecutor(max_workers=2, mp_context="fork")
    pairs = list(pool.completed(time.sleep, [0.0, 0.0, 30.0, 30.0], timeout_s=1.5))
    assert sorted(i for i, _ in pairs) == [0, 1]
    assert time.monotonic() - started < 10.0
    _assert_workers_stop()


def test_leaving_the_loop_early_stops_the_workers_at_once() -> None:
    started = time.monotonic()
    pool = LocalExecutor(max_workers=2, mp_context="fork")
    got = []
    for i, _ in pool.completed(time.sleep, [0.0, 30.0, 30.0]):
        got.append(i)
        break
    assert got == [0]
    assert time.monotonic() - started < 10.0
    _assert_workers_stop()


def _assert_workers_stop() -> None:
    """The pool's forked workers (children of this process) are gone within seconds, not
    left sleeping out their 30 s items."""
    deadline = time.monotonic() + 5.0
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


def test_in_process_completed_checks_the_deadline_between_items() -> None:
    seen: list[float] = []

    def slow(x: float) -> float:
        seen.append(x)
        time.sleep(x)
        return x

    pairs = list(LocalExecutor(max_workers=1).completed(slow, [0.3, 0.3, 0.3], timeout_s=0.1))
    assert pairs == [(0, 0.3)]  # the first item started before the deadline and finished
    assert seen == [0.3]


def test_a_failing_item_in_completed_names_the_item() -> None:
    with pytest.raises(ValueError, match="math domain error") as info:
        list(LocalExecutor(max_workers=2, mp_context="fork").completed(math.sqrt, [4.0, -1.0]))
    assert "executor item 1: -1.0" in info.value.__notes__


def test_the_default_completed_follows_map() -> None:
    class Listed(Executor):
        n_workers = 1

        def map(self, fn, items):  # type: ignore[no-untyped-def]
            return [fn(x) for x in items]

    assert list(Listed().completed(abs, [-1, 2])) == [(0, 1), (1, 2)]


def test_unpicklable_function_is_a_config_error_for_a_pool() -> None:
    with pytest.raises(ConfigError, match="picklable top-level function"):
        LocalExecutor(max_workers=2).map(lambda x: x, [1, 2])
    with pytest.raises(ConfigError, match="picklable top-level function"):
        list(LocalExecutor(max_workers=2).completed(lambda x: x, [1, 2]))
    # in-process needs no pickling
    assert LocalExecutor(max_workers=1).map(lambda x: x + 1, [1, 2]) == [2, 3]


def test_empty_and_single_item_maps_run_in_process() -> None:
    ex = LocalExecutor(max_workers=4)
    assert ex.map(abs, []) == []
    assert ex.map(lambda x: -x, [3]) == [-3]  # a lambda: proves no pool was started


def test_worker_counts_and_startup_cost() -> None:
    assert LocalExecutor(max_workers=1).startup_cost_s == 0.0
    assert LocalExecutor(max_workers=3).n_workers == 3
    assert LocalExecutor().n_workers == available_cpus()
    assert LocalExecutor(max_workers=2, mp_context="fork").startup_cost_s == 0.0
    assert LocalExecutor(max_workers=2, mp_context="spawn").startup_cost_s > 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_workers": 0}, "max_workers must be >= 1 or None; received 0"),
        ({"mp_context": "threads"}, "mp_context must be one of"),
    ],
)
def test_bad_local_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LocalExecutor(**kwargs)  # type: ignore[arg-type]


def test_get_executor_specs() -> None:
    assert isinstance(get_executor(None), LocalExecutor)
    assert get_executor("local").n_workers == available_cpus()
    assert get_executor("local:3").n_workers == 3
    given = LocalExecutor(max_workers=1)
    assert get_executor(given) is given
    for bad in ("local:0", "local:x", "cluster", "ftp://host"):
        with pytest.raises(ConfigError, match=repr(bad)):
            get_executor(bad)


def test_tcp_spec_names_the_dask_extra_until_a_backend_plugs_in() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match=r"pip install 'bastion\[dask\]'"):
            get_executor("tcp://scheduler:8786")
    else:  # pragma: no cover - dask is not in the test environment
        with pytest.raises(ConfigError, match="register_backend"):
            get_executor("tcp://scheduler:8786")


def test_a_registered_backend_plugs_in() -> None:
    class Recording(Executor):
        def __init__(self, spec: str) -> None:
            self.spec = spec

        @property
        def n_workers(self) -> int:
            return 7

        def map(self, fn, items):  # type: ignore[no-untyped-def]
            return [fn(i) for i in items]

    register_backend("test", Recording)
    try:
        ex = get_executor("test://somewhere:1")
        assert isinstance(ex, Recording)
        assert ex.spec == "test://somewhere:1"
        assert ex.map(operator.neg, [1, 2]) == [-1, -2]
    finally:
        from bastion import executor

        executor._BACKENDS.pop("test", None)


def _reach(address: tuple[str, int]) -> bool:
    import socket

    socket.create_connection(address, timeout=2).close()
    return True


def test_workers_run_under_the_parents_network_rule() -> None:
    """A worker is a new interpreter, outside the parent's network rule: user code run
    there (shadow models trained by a train_fn) reached ports the parent refused."""
    import socket

    from bastion.attacks.network import only_endpoints

    servers = []
    for _ in range(2):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        servers.append(server)
    allowed, other = (("127.0.0.1", s.getsockname()[1]) for s in servers)
    # fresh interpreters, as the default start method gives (a forked worker inherits the
    # parent's patched socket module by accident)
    pool = LocalExecutor(max_workers=2, mp_context="spawn")
    try:
        with only_endpoints([f"http://127.0.0.1:{allowed[1]}"]):
            assert pool.map(_reach, [allowed, allowed]) == [True, True]
            with pytest.raises(PermissionError, match=rf"port {other[1]} refused"):
                pool.map(_reach, [allowed, other])
            with pytest.raises(PermissionError, match=rf"port {other[1]} refused"):
                list(pool.completed(_reach, [other, allowed]))
        assert pool.map(_reach, [other, other]) == [True, True]  # no rule outside the block
    finally:
        for server in servers:
            server.close()


class _TwoArgumentError(Exception):
    """Pickle rebuilds an exception from ``args``: this one's ``__init__`` wants two."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column}: {reason}")


def _fails_with_two_arguments(_: int) -> int:
    raise _TwoArgumentError("age", "all NaN")


@pytest.mark.parametrize("method", ["map", "completed"])
def test_an_exception_pickle_cannot_rebuild_keeps_its_message(method: str) -> None:
    # from a review: the pool reported "a process terminated abruptly", the message lost
    pool = LocalExecutor(max_workers=2)

    def run() -> object:
        if method == "map":
            return pool.map(_fails_with_two_arguments, [1, 2])
        return list(pool.completed(_fails_with_two_arguments, [1, 2]))

    with pytest.raises(WorkerError, match="_TwoArgumentError: column age: all NaN") as info:
        run()
    notes = "\n".join(info.value.__notes__)
    assert "_fails_with_two_arguments" in notes  # the worker's traceback
    assert "executor item" in notes
    with pytest.raises(_TwoArgumentError):  # in-process, the exception itself
        LocalExecutor(max_workers=1).map(_fails_with_two_arguments, [1])


def test_what_cannot_reach_a_worker_is_named() -> None:
    pool = LocalExecutor(max_workers=2)
    assert pool.cannot_send(math.sqrt) is None
    assert pool.cannot_send([1, {"a": (2.0,)}]) is None
    reason = pool.cannot_send(lambda x: x)
    assert reason is not None
    assert reason.startswith("cannot be pickled")
    assert LocalExecutor(max_workers=1).cannot_send(lambda x: x) is None  # in-process


def test_a_main_without_a_file_cannot_reach_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # a class of a notebook's (or python -'s) __main__: a forkserver worker cannot import it
    import sys
    import types

    main = types.ModuleType("__main__")
    main.__file__ = "<stdin>"  # type: ignore[attr-defined]
    made = type("Notebook", (), {"__module__": "__main__"})
    main.Notebook = made  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__main__", main)
    reason = unsendable_reason({"recipe": made})
    assert reason is not None
    assert "'Notebook', defined in a __main__ without a file" in reason
    assert unsendable_reason(math.sqrt) is None


def test_a_class_defined_under_the_main_guard_cannot_reach_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a worker runs the script's top level again, not its "if __name__ == '__main__'" block
    import sys
    import types

    script = tmp_path / "train.py"
    script.write_text(
        "class Top:\n    pass\n\nif __name__ == '__main__':\n    class Guarded:\n        pass\n"
    )
    main = types.ModuleType("__main__")
    main.__file__ = str(script)  # type: ignore[attr-defined]
    top = type("Top", (), {"__module__": "__main__"})
    guarded = type("Guarded", (), {"__module__": "__main__"})
    main.Top, main.Guarded = top, guarded  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert unsendable_reason(top) is None
    reason = unsendable_reason(guarded)
    assert reason is not None
    assert "train.py defines only under" in reason
    assert unsendable_reason(guarded, inherits_main=True) is None  # forked workers have it
    assert LocalExecutor(max_workers=2, mp_context="fork").cannot_send(guarded) is None
    assert LocalExecutor(max_workers=2, mp_context="spawn").cannot_send(guarded) == reason


def test_the_main_guard_scan_reads_both_spellings_and_loops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    script = tmp_path / "run.py"
    script.write_text(
        "for _ in range(1):\n    class InLoop: pass\n"
        "while False:\n    print(Yoda)\n"
        "if '__main__' == __name__:\n    class Yoda: pass\n"
        "if __name__ != '__main__':\n    class NotMain: pass\nelse:\n    class ElseMain: pass\n"
    )
    main = types.ModuleType("__main__")
    main.__file__ = str(script)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__main__", main)
    for name, sendable in (
        ("InLoop", True),
        ("Yoda", False),
        ("NotMain", True),
        ("ElseMain", False),
    ):
        made = type(name, (), {"__module__": "__main__"})
        setattr(main, name, made)
        assert (unsendable_reason(made) is None) is sendable, name
