"""Join a Ray cluster or start a local instance, and say which one it is and what it holds."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from types import ModuleType

from kpnet_edge.errors import KpnetError

INSTALL_HINT = "pip install 'kpnet-edge[scale]'"


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster this process is connected to: its address, alive nodes, CPUs and GPUs."""

    address: str
    local: bool
    nodes: int
    cpus: float
    gpus: float

    def describe(self) -> str:
        """One line for the user, e.g. "Ray cluster at 10.0.0.5:6379 (4 nodes, 64 CPUs, 8 GPUs)"."""
        what = "local Ray instance" if self.local else f"Ray cluster at {self.address}"
        gpus = f", {self.gpus:g} GPUs" if self.gpus else ""
        return f"{what} ({self.nodes} node{'s' if self.nodes != 1 else ''}, {self.cpus:g} CPUs{gpus})"


def require_ray() -> ModuleType:
    """The `ray` module, or a KpnetError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (detect needs Ray Data, part of the same extra)
    except ImportError as error:
        raise KpnetError(f"--engine ray needs Ray ({error.name} is not installed): {INSTALL_HINT}") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> Cluster:
    """Join the cluster at `address` (else $RAY_ADDRESS, as `ray job submit` sets it), or start a
    local instance with `num_cpus` CPUs (default: all). A process already connected stays on its
    cluster. Ray's own log lines are kept to warnings and errors."""
    ray = require_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        options = {"logging_level": logging.WARNING, "log_to_driver": False}
        try:
            if address is None:
                # Ray runs its workers 15 nice levels below the command by default; here they do the
                # work the command was started for, so they share its priority (on a machine busy
                # with other jobs the default starves them).
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                         _system_config={"worker_niceness": 0}, **options)
            else:
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise KpnetError(f"could not start or join {where}: {error}") from None
    _quiet_ray_data()
    context = ray.get_runtime_context()
    resources = ray.cluster_resources()
    return Cluster(
        address=context.gcs_address,
        local=address is None,
        nodes=sum(1 for node in ray.nodes() if node.get("Alive")),
        cpus=float(resources.get("CPU", 0.0)),
        gpus=float(resources.get("GPU", 0.0)),
    )


def _quiet_ray_data() -> None:
    # Our own progress bar and summary say what happened; Ray Data's per-operator log lines and
    # bars would interleave with them on stderr.
    import ray.data

    data_context = ray.data.DataContext.get_current()
    data_context.enable_progress_bars = False
    data_context.print_on_execution_start = False
    data_context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Its one warning says the bars are off, which is what we asked for.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
