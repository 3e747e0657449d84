"""INT8 support shared by the converters: calibration sets and agreement metrics against PyTorch."""
