"""`kpnet-edge detect --engine ray`: the command's arguments -> detect_on_ray, the shards, summary.json,
the merged --json and a one-line summary."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from kpnet_edge.atomic import atomic_write_text
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import is_video, list_images
from kpnet_edge.postprocess import PostprocessParams

LIST_SUFFIXES = frozenset({".txt", ".lst"})
"""A source with one of these suffixes lists image paths, one per line (blank lines and # comments skipped)."""
DEFAULT_BATCH = 8
"""Images per model call in each actor, as the single-process `detect` uses for folders."""


def run_on_ray(args: argparse.Namespace, params: PostprocessParams) -> int:
    """Detect faces in args.source's images on Ray with `params` (detect has checked the options
    they share); 0, or 1 when some images were unreadable or damaged."""
    from kpnet_edge.commands.detect import _detector
    from kpnet_edge.scale.cluster import connect
    from kpnet_edge.scale.detect import detect_on_ray, needs_gpu, plan_actors

    if args.draw:
        raise KpnetError("--draw is not available with --engine ray; draw a few images without it")
    batch = args.batch if args.batch is not None else DEFAULT_BATCH
    names = image_names(args.source)
    # One detector built here first (on the CPU when the actors get GPUs): a wrong option or a
    # missing model file is one line before any cluster work, not an actor's traceback.
    checked = {"device": "cpu"} if needs_gpu(args.device) else {}
    _detector(argparse.Namespace(**{**vars(args), **checked}), params, batch, True)
    cluster = connect(args.ray_address)
    plan = plan_actors(cluster, args.device, args.workers, args.threads)
    print(f"kpnet-edge detect: {len(names)} images on the {cluster.describe()}, {plan.describe()}",
          file=sys.stderr)
    # Every actor builds its detector from the command's own options, as plain `detect` does.
    actor_args = argparse.Namespace(**{**vars(args), "device": plan.device, "threads": plan.threads})
    make_detector = partial(_detector, actor_args, params, batch, True)
    summary = detect_on_ray(names, make_detector, plan, args.shards, batch,
                            keep_records=args.json is not None, progress=True)
    details = {"source": str(args.source), "cluster": cluster.describe(), "actors": plan.describe(),
               **summary.to_dict()}
    atomic_write_text(args.shards / "summary.json", json.dumps(details, indent=1) + "\n")
    if args.json:
        atomic_write_text(args.json, json.dumps(summary.records, indent=1) + "\n")
    merged = f" and {args.json}" if args.json else ""
    print(f"{summary.faces} faces in {summary.images - len(summary.failures)} images, "
          f"{len(summary.failures)} unreadable, {len(summary.damaged)} damaged -> {len(summary.shards)} "
          f"shard(s) and summary.json in {args.shards}{merged}", file=sys.stderr)
    problems = len(summary.failures) + len(summary.damaged)
    if problems:
        print(f"kpnet-edge detect: {problems} input(s) unreadable or damaged (see above)", file=sys.stderr)
        return 1
    return 0


def image_names(source: Path) -> list[str]:
    """The images of a folder (sorted, as `detect` lists them), of a .txt/.lst list, or one image."""
    if not source.exists():
        raise KpnetError(f"{source}: no such file or folder")
    if source.is_dir():
        return [str(path) for path in list_images(source)]
    if is_video(source):
        raise KpnetError(f"{source}: --engine ray reads images (a folder or a .txt list of paths); "
                         "run videos without --engine ray")
    if source.suffix.lower() in LIST_SUFFIXES:
        lines = (line.strip() for line in source.read_text().splitlines())
        names = [line for line in lines if line and not line.startswith("#")]
        if not names:
            raise KpnetError(f"{source}: lists no image paths (one path per line)")
        return names
    return [str(source)]
