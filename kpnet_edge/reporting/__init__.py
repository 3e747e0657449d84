"""`kpnet-edge report`: every converted model against the PyTorch FP32 reference, with the same
post-processor and metrics for all: accuracy and its drop, where the error comes from, latency."""
