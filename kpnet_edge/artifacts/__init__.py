"""The artefact contract that converters write and on-device code reads: the backends x precisions
table (targets.py) and manifest.json (manifest.py). Light: numpy-free, no framework imports."""

from kpnet_edge.artifacts.manifest import (
    MANIFEST_NAME,
    Manifest,
    ModelEntry,
    TensorInfo,
    load_manifest,
    manifest_folder,
    sha256_file,
    verify_model,
)
from kpnet_edge.artifacts.targets import (
    BACKENDS,
    FORMATS,
    PRECISIONS,
    TARGETS,
    Backend,
    Target,
    check_options,
    select_targets,
    target,
)

__all__ = [
    "BACKENDS",
    "FORMATS",
    "MANIFEST_NAME",
    "PRECISIONS",
    "TARGETS",
    "Backend",
    "Manifest",
    "ModelEntry",
    "Target",
    "TensorInfo",
    "check_options",
    "load_manifest",
    "manifest_folder",
    "select_targets",
    "sha256_file",
    "target",
    "verify_model",
]
