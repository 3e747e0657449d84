"""Export DRNet to deployable formats: `convert` (pipeline.py) over the one targets table
(targets.py), writing manifest.json (manifest.py). Backends import their frameworks lazily."""

from kpnet_edge.converters.manifest import Manifest, ModelEntry, TensorInfo, load_manifest
from kpnet_edge.converters.pipeline import convert
from kpnet_edge.converters.targets import TARGETS, Target, select_targets

__all__ = [
    "TARGETS",
    "Manifest",
    "ModelEntry",
    "Target",
    "TensorInfo",
    "convert",
    "load_manifest",
    "select_targets",
]
