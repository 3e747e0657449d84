"""Images per second of `kpnet-edge detect` on a folder: the single-process path against
`--engine ray` with 1 and 2 actors on a local Ray instance, the shipped model (PyTorch, CPU).

Each configuration runs the command on a large and a small subset of the same photos
(WIDER-val-200-dev); images/s = (large - small) / (time large - time small), the rate once the
model is loaded, and the small run's time is the fixed cost (Ray's actors and model loading).
Configurations are interleaved within each repeat, so a neighbour's load (a training job on the dev
machine) hits them alike; medians and ratios come from one run. Also derives what a cluster run
would give from the per-actor rate (and from benchmarks/results/latency.json's unloaded figure).
Writes benchmarks/results/ray_detect.json and ray_detect.md; --render rewrites the .md from the
.json without measuring.

    python benchmarks/ray_detect.py [--images 200] [--small 16] [--repeats 3] [--render]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from kpnet_edge.cli import main
from kpnet_edge.datapaths import data_root
from kpnet_edge.imageio import list_images

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {"local": [], "ray-1-actor": ["--engine", "ray", "--workers", "1"],
           "ray-2-actors": ["--engine", "ray", "--workers", "2"]}
CLUSTER = {"nodes": 4, "cpus_per_node": 16}
"""The cluster the markdown's paragraph sizes: four 16-CPU nodes, one one-CPU actor per CPU."""


def subset(paths: list[Path], count: int, parent: Path) -> Path:
    """A folder of links to the first `count` photos."""
    folder = parent / f"first{count}"
    folder.mkdir()
    for path in paths[:count]:
        (folder / path.name).symlink_to(path.resolve())
    return folder


def timed_detect(folder: Path, extra: list[str], scratch: Path) -> float:
    """Wall seconds of one `kpnet-edge detect FOLDER --json ...` (stderr silenced)."""
    run = tempfile.mkdtemp(dir=scratch)
    argv = ["detect", str(folder), "--json", f"{run}/faces.json", "--shards", f"{run}/shards", *extra]
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        started = time.perf_counter()
        code = main(argv)
        seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"detect {' '.join(extra) or '(local)'} exited {code}")
    return seconds


def summarise(times: dict[int, list[float]], large: int, small: int) -> dict:
    """Medians, the marginal rate and the fixed cost of one configuration."""
    median_large, median_small = statistics.median(times[large]), statistics.median(times[small])
    rate = (large - small) / (median_large - median_small)
    return {"seconds": {str(k): v for k, v in times.items()},
            "median_seconds": {str(large): median_large, str(small): median_small},
            "images_per_second": rate, "fixed_seconds": median_small - small / rate}


def unloaded_per_core() -> float | None:
    """Images/s per core of the shipped model, PyTorch batch 8, from latency.json (measured when
    the machine was less busy), or None without that file."""
    path = RESULTS / "latency.json"
    if not path.is_file():
        return None
    latency = json.loads(path.read_text())
    rows = [r for r in latency["rows"] if (r["backend"], r["precision"], r["batch"]) == ("torch", "fp32", 8)]
    return 1000.0 / rows[0]["end_to_end_ms_per_image"] / rows[0]["threads"] if rows else None


def cluster_paragraph(rows: dict[str, dict]) -> str:
    """What a cluster run would look like, from the measured per-actor rate."""
    per_actor = rows["ray-1-actor"]["images_per_second"]
    two = rows["ray-2-actors"]["images_per_second"]
    actors = CLUSTER["nodes"] * CLUSTER["cpus_per_node"]
    per_core = unloaded_per_core()
    unloaded = "" if per_core is None else (
        f" That rate is what this busy machine left us. Unloaded, the same model ran at "
        f"{per_core:.0f} images/s per core (benchmarks/results/latency.json: PyTorch, batch 8, 2 threads, "
        f"per thread), so on dedicated cores of this speed expect about {actors} x {per_core:.0f} = "
        f"{actors * per_core:.0f} images/s: a 416 px JPEG is about 40 kB, so the shared file system "
        f"must serve about {actors * per_core * 40 / 1000:.0f} MB/s.")
    return (
        f"**On a cluster.** One actor (1 CPU, 1 thread) detected {per_actor:.2f} images/s here; two "
        f"actors on this machine's 2 cores gave {two:.2f} images/s ({two / per_actor:.2f}x one actor), "
        f"sharing them with the training job. Actors share nothing but the input list, and the driver only "
        f"writes a few hundred bytes per image, so throughput grows with the actor count: a cluster of "
        f"{CLUSTER['nodes']} nodes x {CLUSTER['cpus_per_node']} CPUs, one actor per CPU ({actors} actors), "
        f"should give about {actors} times the per-actor rate, {actors} x {per_actor:.2f} = "
        f"{actors * per_actor:.0f} images/s at the rate measured here.{unloaded} GPU nodes run one actor per GPU "
        "(`--device cuda`); their rate was not measured here. The command, from any machine that "
        "sees the images at the same paths as the workers:\n\n"
        "```bash\nkpnet-edge detect /shared/photos/ --engine ray --ray-address HEAD_IP:6379 "
        f"--workers {actors} \\\n    --shards /shared/out/shards --json /shared/out/faces.json\n```\n"
    )


def markdown(record: dict) -> str:
    """The results table and the cluster paragraph."""
    rows = record["configs"]
    local = rows["local"]["images_per_second"]
    lines = [
        "# detect: single process vs Ray actors (this machine)", "",
        f"{record['images']} WIDER-val-200-dev photos (and a {record['small']}-image run for the fixed cost), "
        f"shipped DRNet on PyTorch CPU, batch 8; {record['repeats']} repeat(s), configurations "
        "interleaved, medians. "
        f"Machine: {record['machine']['cpus']} CPUs, load average {record['machine']['load_before'][0]:.1f} "
        f"before and {record['machine']['load_after'][0]:.1f} after: a training job was running beside it, "
        "so absolute rates are low and noisy; the ratios come from one run.", "",
        "| path | images/s | vs local | fixed cost (s) |", "|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['images_per_second']:.2f} | {row['images_per_second'] / local:.2f}x "
                     f"| {row['fixed_seconds']:.1f} |")
    lines += ["", "The local path runs PyTorch on all cores (2 threads); each Ray actor reserves one CPU and "
              "runs one thread. The fixed cost is mostly Ray's actors starting (importing PyTorch and loading "
              "the model) on starved cores; it is paid once per run, not per image.", "",
              cluster_paragraph(rows)]
    return "\n".join(lines)


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--small", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--render", action="store_true", help="rewrite ray_detect.md from ray_detect.json")
    args = parser.parse_args()
    if args.render:
        (RESULTS / "ray_detect.md").write_text(markdown(json.loads((RESULTS / "ray_detect.json").read_text())))
        return
    from kpnet_edge.scale.cluster import connect

    photos = list_images(data_root() / "widerface_val200_dev" / "images")[: args.images]
    large = len(photos)
    load_before = os.getloadavg()
    cluster = connect()
    times = {name: {large: [], args.small: []} for name in CONFIGS}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folders = {large: subset(photos, large, scratch), args.small: subset(photos, args.small, scratch)}
        timed_detect(folders[args.small], [], scratch)  # warm the imports and file cache
        for repeat in range(args.repeats):
            for name, extra in CONFIGS.items():
                for count, folder in folders.items():
                    times[name][count].append(timed_detect(folder, extra, scratch))
                    print(f"repeat {repeat + 1}: {name} {count} images {times[name][count][-1]:.1f} s", flush=True)
    record = {
        "benchmark": "ray_detect", "images": large, "small": args.small, "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "ray": cluster.describe(),
                    "load_before": load_before, "load_after": os.getloadavg()},
        "configs": {name: summarise(t, large, args.small) for name, t in times.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray_detect.json").write_text(json.dumps(record, indent=1) + "\n")
    (RESULTS / "ray_detect.md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main_benchmark()
