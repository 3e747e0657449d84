"""kpnet-edge: convert, quantize, run and measure KPNet face detectors on edge devices."""

__version__ = "0.1.0"
