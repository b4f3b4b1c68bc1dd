"""Process groups for the multi-process tests: gloo on CPU, spawned once per test session.

A :class:`ProcessGroup` holds ``world`` worker processes that joined one
:mod:`torch.distributed` group (gloo) when they started. A test hands them a function
(defined at module level in an importable test module, so that it pickles by name) and
its arguments with :meth:`ProcessGroup.run`; every rank calls it, and the results come
back in rank order. Workers turn warnings into errors, as the test configuration does.

A rank that fails or hangs (the others then wait in a collective) brings the group down:
the error is raised in the test, and the next test gets a fresh group.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import socket
import traceback
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

TIMEOUT_S = 120.0
"""Longest a call may take before the group is taken down (a rank waiting forever)."""


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, tasks: Any, results: Any) -> None:
    warnings.simplefilter("error")
    warnings.filterwarnings("ignore", ".*TypedDict.*", DeprecationWarning)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=TIMEOUT_S),
    )
    results.put((rank, True, "ready"))
    while True:
        task = tasks.get()
        if task is None:
            break
        fn, args, kwargs = task
        try:
            results.put((rank, True, fn(*args, **kwargs)))
        except BaseException:
            results.put((rank, False, traceback.format_exc()))
    dist.destroy_process_group()


class ProcessGroup:
    """``world`` processes in one gloo group, running the functions a test gives them."""

    def __init__(self, world: int) -> None:
        self.world = world
        context = mp.get_context("spawn")
        port = free_port()
        self._results = context.Queue()
        self._tasks = [context.Queue() for _ in range(world)]
        self._processes = [
            context.Process(
                target=_worker, args=(r, world, port, self._tasks[r], self._results), daemon=True
            )
            for r in range(world)
        ]
        for p in self._processes:
            p.start()
        self._collect()

    @property
    def alive(self) -> bool:
        """Whether every worker is still running."""
        return all(p.is_alive() for p in self._processes)

    def _collect(self) -> list[Any]:
        out: list[Any] = [None] * self.world
        failures = []
        for _ in range(self.world):
            # once a rank failed, the others may wait in a collective forever
            wait = 5.0 if failures else TIMEOUT_S
            try:
                rank, ok, value = self._results.get(timeout=wait)
            except queue.Empty:
                self.close()
                if failures:
                    break
                raise TimeoutError(
                    f"a rank of the {self.world}-process group did not answer within {wait:.0f} s"
                ) from None
            if ok:
                out[rank] = value
            else:
                failures.append(f"rank {rank}:\n{value}")
        if failures:
            self.close()
            raise RuntimeError("\n".join(failures))
        return out

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """``[fn(*args, **kwargs) on rank r for r in range(world)]``."""
        if not self.alive:
            raise RuntimeError("the process group is down")
        for t in self._tasks:
            t.put((fn, args, kwargs))
        return self._collect()

    def close(self) -> None:
        """Stop the workers (kill those that do not stop)."""
        for t in self._tasks:
            try:
                t.put(None)
            except (OSError, ValueError):
                pass
        for p in self._processes:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()


class ProcessGroups:
    """A 2- and a 3-process group for the session, each started on first use."""

    def __init__(self) -> None:
        self._groups: dict[int, ProcessGroup] = {}

    def __call__(self, world: int) -> ProcessGroup:
        """The group of ``world`` processes, started (again, if one went down) as needed."""
        group = self._groups.get(world)
        if group is None or not group.alive:
            group = self._groups[world] = ProcessGroup(world)
        return group

    def close(self) -> None:
        """Stop every group."""
        for group in self._groups.values():
            group.close()
        self._groups.clear()
