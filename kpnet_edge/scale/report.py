"""`kpnet-edge report --engine ray`: each converted model's evaluation pass as a Ray task.

A task runs reporting.run.collect on the reference and one candidate, the same code and inputs as
the single-process pass, so its records and stage figures are the same; the reference's own run
comes from the first task. Latency is still timed in this process, on this machine's hardware.
On a cluster every node must see the model folder, the weights and the data at the same paths."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kpnet_edge.errors import KpnetError
from kpnet_edge.postprocess import PostprocessParams
from kpnet_edge.reporting.models import ReportModel
from kpnet_edge.reporting.run import EvalSets, ModelRun, collect

Collector = Callable[..., dict[str, ModelRun]]


def ray_collector(address: str | None = None, threads: int | None = None) -> Collector:
    """Connect to Ray (cluster.connect) and return a drop-in for reporting.run.collect whose
    tasks each reserve `threads` CPUs (default 1)."""
    from kpnet_edge.scale.cluster import connect

    cluster = connect(address)
    print(f"kpnet-edge report: evaluating on the {cluster.describe()}", file=sys.stderr)
    cpus = min(float(threads or 1), cluster.cpus)

    def collect_on_ray(models: Sequence[ReportModel], sets: EvalSets, params: PostprocessParams,
                       reference: ReportModel | None = None, operating_score: float = 0.3,
                       moved_px: float = 2.0, progress: bool = False,
                       runtimes: Mapping[str, object] | None = None, **options: Any) -> dict[str, ModelRun]:
        # Runtimes opened in this process stay here (for latency); each task opens its own.
        return collect_models_on_ray(models, sets, params, reference, operating_score, moved_px, progress, cpus,
                                     **options)

    return collect_on_ray


def collect_models_on_ray(
    models: Sequence[ReportModel],
    sets: EvalSets,
    params: PostprocessParams,
    reference: ReportModel | None = None,
    operating_score: float = 0.3,
    moved_px: float = 2.0,
    progress: bool = False,
    cpus: float = 1.0,
    **options: Any,
) -> dict[str, ModelRun]:
    """What collect(models, sets, ...) returns, with one Ray task per model: (reference, model)
    when there is a reference, else the model alone; options go to collect (canvas_size)."""
    import ray

    evaluate = ray.remote(num_cpus=cpus, max_retries=0)(collect)
    shared_sets = ray.put(sets)
    candidates = [m for m in models if reference is None or m.key != reference.key]
    groups = {m.key: [reference, m] if reference is not None else [m] for m in candidates}
    if not groups and reference is not None:
        groups = {reference.key: [reference]}
    pending = {
        evaluate.remote(group, shared_sets, params, reference, operating_score, moved_px, False, **options): key
        for key, group in groups.items()
    }
    runs: dict[str, ModelRun] = {}
    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(done)
        try:
            result = ray.get(done)
        except ray.exceptions.RayError as error:
            raise _user_error(key, error) from None
        runs[key] = result[key]
        if reference is not None and reference.key not in runs:
            runs[reference.key] = result[reference.key]
        if progress:
            print(f"evaluated {key} ({len(groups) - len(pending)}/{len(groups)})", file=sys.stderr, flush=True)
    return {m.key: runs[m.key] for m in models}


def _user_error(key: str, error: Exception) -> KpnetError:
    cause = getattr(error, "cause", None)
    if isinstance(cause, KpnetError):
        return KpnetError(str(cause))
    text = str(cause or error).strip()
    return KpnetError(f"evaluating {key} on Ray failed: {text.splitlines()[0] if text else type(error).__name__}")
