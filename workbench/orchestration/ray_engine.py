"""Ray as an engine: jobs (a function, its argument, the CPUs and GPUs it needs) run as Ray tasks.

The sweep's Ray engine (`workbench sweep --engine ray`, orchestration/sweeps.py) submits each point
through `run_jobs`: on a local Ray started for the sweep and shut down after it, or on the cluster at an
address (`--address HOST:6379`). A task gets `num_cpus` and `num_gpus` as its job asks (Ray sets
CUDA_VISIBLE_DEVICES for it). Results come back as jobs finish, each through `on_done`, so the caller
moves its progress bar.

Bad input, each one clear error: Ray not installed; an address that does not answer within
ADDRESS_TIMEOUT_S; a job that asks for more CPUs or GPUs than any live node has ("not schedulable",
reported for that job instead of waiting for a node that never comes). A job that raises or whose worker
dies is reported with its error and the others go on; Ctrl-C cancels the jobs still running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.errors import ConfigError
from workbench.orchestration.signals import STOP_SIGNALS

ADDRESS_TIMEOUT_S = 10.0  # how long an unreachable --address is tried before one clear error
DEFAULT_PORT = 6379  # Ray's GCS port, when an address names a host only


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ConfigError(
            "the ray engine needs Ray, which is not installed: pip install 'workbench[ray]' (or leave out "
            "--engine ray to run the points one after the other here)"
        ) from err
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) an address connects to; None for "auto" (Ray finds the local cluster itself)."""
    if address == "auto":
        return None
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    try:
        return host.strip("[]") or "127.0.0.1", int(port) if port else DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"Ray address {address!r} is not host:port, ray://host:port or auto") from None


def check_reachable(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """ConfigError unless something accepts a connection at `address` within `timeout` seconds."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as err:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({err or 'timed out'}, waited up to "
            f"{timeout:.0f} s): start it with `ray start --head` there, or leave out --address for a "
            "local Ray"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray connected for the sweep: the cluster at `address`, one already initialised in this process,
    or a local Ray on this machine's cores (shut down afterwards)."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    if address is not None:
        check_reachable(address)
    with _signal_handlers_kept():  # ray.init installs its own SIGTERM handler in this process
        yield from _connected(ray, address)


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """The process's SIGTERM / SIGINT / SIGHUP handlers as they were before the block (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {s: signal.getsignal(s) for s in STOP_SIGNALS + (signal.SIGINT,)}
    try:
        yield
    finally:
        for s, handler in kept.items():
            if handler is not None:
                signal.signal(s, handler)


def _connected(ray: Any, address: str | None) -> Iterator[Any]:
    try:
        if address is None:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(f"could not start Ray{f' at {address}' if address else ''}: {err}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Job:
    """One Ray task: `function(argument)` on a node with `cpus` cores and `gpus` GPUs free."""

    function: Callable[[Any], Any]
    argument: Any
    cpus: float = 1.0
    gpus: float = 0.0


def largest_node(ray: Any) -> dict[str, float]:
    """The most CPUs and GPUs any one live node of the cluster has (a task runs on one node)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    return {kind: max((float(n.get(kind, 0)) for n in nodes), default=0.0) for kind in ("CPU", "GPU")}


def unschedulable(job: Job, largest: dict[str, float]) -> str | None:
    """Why no node of the cluster can run `job`, or None."""
    for name, kind, amount in (("cpus", "CPU", job.cpus), ("gpus", "GPU", job.gpus)):
        if amount > largest[kind]:
            return (
                f"not schedulable: it asks for {name} = {amount:g} and the largest node of the Ray cluster "
                f"has {largest[kind]:g}; lower its resources.{name} or add a node that has them"
            )
    return None


def run_jobs(
    jobs: Sequence[Job], address: str | None, on_done: Callable[[int, Any, str | None], None]
) -> None:
    """Run every job as a Ray task; `on_done(index, result, error)` as each ends (error: None, or one
    line: what the job raised, its worker's death, or why it cannot be scheduled)."""
    with ray_session(address) as ray:
        largest = largest_node(ray)
        pending: dict[Any, int] = {}
        for i, job in enumerate(jobs):
            why = unschedulable(job, largest)
            if why:
                on_done(i, None, why)
                continue
            remote = ray.remote(job.function).options(num_cpus=job.cpus, num_gpus=job.gpus)
            pending[remote.remote(job.argument)] = i
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(ref)
                try:
                    result, error = ray.get(ref), None
                except Exception as err:  # the job raised, or its worker died
                    result, error = None, _task_error(err)
                on_done(i, result, error)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise


def _task_error(err: Exception) -> str:
    """One line for what a Ray task raised (its cause, not Ray's wrapper)."""
    cause = getattr(err, "cause", None) or err
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}".rstrip(": ")
