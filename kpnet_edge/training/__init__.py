"""Training DRNet: synthetic scenes, Eq. 1-3 targets, Eq. 4/7 losses and the training loop."""
