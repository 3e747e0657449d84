"""Dev AP against training samples seen, from a run's dev.jsonl: a PNG and a markdown table.

    python benchmarks/training_curve.py runs/drnet_real/dev.jsonl [--out benchmarks/results/drnet_real_curve.png]
    python benchmarks/training_curve.py stage1/dev.jsonl stage2/dev.jsonl@2000 [...]

Each dev.jsonl line is one evaluation the trainer made (kpnet_edge/training/trainer.py): the
step, the samples seen, and per dev set its figures (AP50 >= 24 px for the box sets). A later
stage that started from an earlier stage's checkpoint is given as LOG@STEP, STEP being that
checkpoint's step in the stage before: its steps and samples continue from there, and the
earlier stage's evaluations after STEP are dropped (the later stage replaced them). A copy of
the combined log is kept beside the PNG, so the curve stays on record after runs/ is gone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def read_curve(dev_log: Path) -> list[dict]:
    """The successful evaluations of a dev.jsonl, in order."""
    records = [json.loads(line) for line in dev_log.read_text().splitlines() if line.strip()]
    return [record for record in records if "score" in record]


def chain_stages(stages: list[tuple[list[dict], int | None]]) -> list[dict]:
    """One curve from stages [(curve, step of the previous stage it started from)]: each later
    stage's step and samples_seen are shifted to continue from that evaluation, and the earlier
    stage's evaluations after it are dropped. The first stage's start is None."""
    chained: list[dict] = []
    for curve, start in stages:
        if start is not None:
            origin = next((r for r in chained if r["step"] == start), None)
            if origin is None:
                raise ValueError(f"no evaluation at step {start} in the stage before")
            chained = [r for r in chained if r["step"] <= start]
            curve = [{**r, "step": r["step"] + start, "samples_seen": r["samples_seen"] + origin["samples_seen"]}
                     for r in curve if r["step"] > 0]
        chained.extend(curve)
    return chained


def parse_stage(argument: str) -> tuple[Path, int | None]:
    """"LOG" or "LOG@STEP" -> (log path, step it started from)."""
    path, at, step = argument.rpartition("@")
    if not at:
        return Path(argument), None
    if not step.isdigit():
        raise ValueError("expected LOG@STEP with STEP a whole number")
    return Path(path), int(step)


def markdown_table(curve: list[dict]) -> str:
    """step | samples seen | AP50 >= 24 px per box dev set."""
    sets = [name for name in curve[0] if isinstance(curve[0][name], dict) and "ap50_24" in curve[0][name]]
    lines = ["| step | samples seen | " + " | ".join(f"{name} AP50 ≥24" for name in sets) + " |",
             "|---|---|" + "---|" * len(sets)]
    for record in curve:
        cells = [f"{record[name]['ap50_24']:.3f}" for name in sets]
        lines.append(f"| {record['step']} | {record['samples_seen']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curve: list[dict], out: Path) -> None:
    """AP50 >= 24 px (and >= 16 px where present) against samples seen."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(6.5, 4))
    seen = [record["samples_seen"] for record in curve]
    for name in (n for n in curve[0] if isinstance(curve[0][n], dict) and "ap50_24" in curve[0][n]):
        axis.plot(seen, [r[name]["ap50_24"] for r in curve], marker="o", label=f"{name} AP50 ≥24 px")
        if curve[0][name].get("ap50_16") is not None and name == "wider":
            axis.plot(seen, [r[name]["ap50_16"] for r in curve], marker=".", linestyle="--",
                      label=f"{name} AP50 ≥16 px")
    axis.set_xlabel("training samples seen")
    axis.set_ylabel("AP50")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    axis.set_title("DRNet dev AP while training on real photos")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """Write the PNG, keep a copy of the log, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dev_logs", nargs="+", metavar="LOG[@STEP]",
                        help="a run's dev.jsonl; later stages as LOG@STEP (see above)")
    parser.add_argument("--out", type=Path, default=RESULTS / "drnet_real_curve.png")
    args = parser.parse_args(argv)
    stages = []
    for argument in args.dev_logs:
        try:
            path, start = parse_stage(argument)
            curve = read_curve(path)
        except (OSError, ValueError) as error:
            print(f"training_curve: error: {argument}: {error}", file=sys.stderr)
            return 2
        if not curve:
            print(f"training_curve: error: {argument}: no evaluations yet", file=sys.stderr)
            return 2
        stages.append((curve, start))
    try:
        curve = chain_stages(stages)
    except ValueError as error:
        print(f"training_curve: error: {error}", file=sys.stderr)
        return 2
    plot(curve, args.out)
    args.out.with_suffix(".jsonl").write_text("".join(json.dumps(record) + "\n" for record in curve))
    print(markdown_table(curve))
    print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
