"""`kpnet-edge train`: train DRNet on synthetic scenes from a config file."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    """Add train's arguments."""
    parser.add_argument("--config", type=Path, help="JSON or YAML settings (see configs/drnet.yaml)")
    parser.add_argument("--resume", type=Path, help="continue from this checkpoint (out_dir/last.pt)")
    parser.add_argument("--out", dest="out_dir", help="output folder (overrides the config)")
    parser.add_argument("--steps", type=int, help="total optimiser steps (overrides the config)")
    parser.add_argument("--batch-size", type=int, help="images per step (overrides the config)")
    parser.add_argument("--device", help="auto, cpu, cuda (overrides the config)")
    parser.add_argument("--seed", type=int, help="random seed (overrides the config)")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="end after this step (the LR schedule still spans all steps)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train and print where the checkpoint and the metrics log are."""
    from kpnet_edge.training.trainer import TrainConfig, train

    overrides = {
        "out_dir": args.out_dir, "steps": args.steps, "batch_size": args.batch_size,
        "device": args.device, "seed": args.seed,
    }
    if args.config:
        cfg = TrainConfig.from_file(args.config, **overrides)
    else:
        cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    print(f"training: {dataclasses.asdict(cfg)}", file=sys.stderr)
    checkpoint = train(cfg, resume=args.resume, stop_at=args.stop_at)
    print(f"checkpoint: {checkpoint}\nmetrics: {Path(cfg.out_dir) / 'metrics.jsonl'}", file=sys.stderr)
    return 0
