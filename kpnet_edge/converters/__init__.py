"""Export DRNet to deployable formats: `convert` (pipeline.py) over the targets table and the
manifest of kpnet_edge.artifacts. Backends import their frameworks lazily."""

from kpnet_edge.converters.pipeline import convert

__all__ = ["convert"]
