"""Peer detectors (YuNet, Haar) beside the report's models: benchmarks/peers.py's stored results,
or its registry run live on the report's own images."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from kpnet_edge.errors import KpnetError
from kpnet_edge.reporting.accuracy import summarise_detection, summarise_landmarks

PEERS_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"
DEFAULT_RESULTS = PEERS_SCRIPT.parent / "results" / "peers.json"
LIVE = "live"
"""--peers live: run the registry now, on the report's images (same --limit), instead of reading JSON."""


def load_peers(source: str, data: Path, limit: int | None, progress: bool = False) -> dict:
    """{"source", "settings", "rows": {name: {"accuracy", "median_ms", "num_images"}}}. The "kpnet"
    entry is left out: the report's reference is that row."""
    if source == LIVE:
        module = _peers_module()
        results = {}
        for name, peer in module.PEERS.items():
            if name == "kpnet":
                continue
            if progress:
                print(f"peers: running {name} ...", file=sys.stderr, flush=True)
            results[name] = module.benchmark(peer, data, limit)
        origin, settings = f"{PEERS_SCRIPT.name} registry, run on this report's images", {"limit": limit}
    else:
        path = Path(source)
        try:
            stored = json.loads(path.read_text())
            results, settings = stored["results"], stored.get("settings", {})
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise KpnetError(f"{path}: not a readable peers results file ({error})") from None
        origin = str(path)
    rows = {}
    for name, result in results.items():
        if name == "kpnet":
            continue
        wider, mtfl = result["wider_val200_dev_416"], result["mtfl_test"]
        rows[name] = {
            "accuracy": {
                "wider": summarise_detection(wider),
                "mtfl": summarise_landmarks(mtfl, mtfl.get("min_score")),
            },
            "median_ms": result.get("median_ms"),
            "num_images": wider["num_images"],
        }
    return {"source": origin, "settings": settings, "rows": rows}


def _peers_module() -> ModuleType:
    """benchmarks/peers.py of this checkout (it is not part of the installed package)."""
    if not PEERS_SCRIPT.is_file():
        raise KpnetError(f"--peers live needs {PEERS_SCRIPT} (a kpnet-edge source checkout)")
    spec = importlib.util.spec_from_file_location("kpnet_benchmark_peers", PEERS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module
