"""`kpnet-edge label`: complete a folder's face labels with a teacher detector (YuNet).

Reads the human labels a folder has (Caltech Web Faces, PASCAL VOC, RetinaFace label.txt, or
none at all), runs the teacher over every image, merges (human points and boxes win, the teacher
fills the gaps, doubtful teacher faces become ignore regions) and writes one RetinaFace-style
label.txt plus a JSON summary of what came from where. With no human labels this is how a user
adapts the model to their own camera's photos.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

FORMATS = ("none", "caltech", "voc", "retinaface")
MASK_CLASSES = ("con_mascarilla", "mascarilla_mal_puesta", "with_mask", "mask_weared_incorrect")
"""VOC classes whose nose and mouth are covered: the teacher's points there are guesses."""


def register(parser: argparse.ArgumentParser) -> None:
    """Add label's arguments."""
    parser.add_argument("images", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--teacher", type=Path, required=True, metavar="ONNX",
                        help="YuNet ONNX file (e.g. yunet_s_640_640.onnx)")
    parser.add_argument("--teacher-size", type=int, default=640, metavar="PX",
                        help="the teacher's square input; must match the ONNX file (default 640)")
    parser.add_argument("--human", type=Path, metavar="PATH",
                        help="human labels: a Caltech ground_truth.txt, a VOC annotations folder "
                             "or a RetinaFace label.txt")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="format of --human (default: guessed from the path)")
    parser.add_argument("--keep-score", type=float, default=0.6,
                        help="teacher faces nobody labelled: a face at or above this score, an "
                             "ignore region below (default 0.6)")
    parser.add_argument("--min-score", type=float, default=0.3,
                        help="teacher faces below this score are dropped (default 0.3)")
    parser.add_argument("--mask-classes", nargs="*", default=list(MASK_CLASSES), metavar="NAME",
                        help="VOC classes with covered nose and mouth (points there become guesses)")
    parser.add_argument("--out", type=Path, required=True, help="label.txt to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Label every image, write label.txt and label.txt.summary.json, print the summary."""
    from kpnet_edge.data.records import AnnotatedImage
    from kpnet_edge.data.retinaface import write_retinaface_labels
    from kpnet_edge.errors import KpnetError
    from kpnet_edge.imageio import list_images, read_image
    from kpnet_edge.teacher import MergeCounts, MergeRules, YuNetTeacher, merge_teacher_labels

    if args.out.is_dir():
        raise KpnetError(f"{args.out}: is a folder; --out names the label.txt to write")
    images = list_images(args.images)
    human = _human_records(args, images)
    teacher = YuNetTeacher(args.teacher, args.teacher_size, args.min_score)
    rules = MergeRules(keep_score=args.keep_score,
                       guessed_points={name: (2, 3, 4) for name in args.mask_classes})
    merged, totals = [], MergeCounts()
    for path in tqdm(images, desc="label", unit="image", file=sys.stderr):
        record = human.get(path.resolve(), AnnotatedImage(path=path, boxes=[]))
        try:
            image = read_image(path)
        except KpnetError as error:
            totals.unreadable.append(str(error))
            continue
        record, counts = merge_teacher_labels(record, teacher.detect(image), rules)
        merged.append(record)
        totals.add(counts)
    write_retinaface_labels(merged, args.out, args.images)
    summary = {
        "folder": str(args.images), "human": str(args.human) if args.human else None,
        "teacher": teacher.name, "keep_score": args.keep_score, "min_score": args.min_score,
        "min_quality_for_training": args.keep_score, **vars(totals),
    }
    summary_path = args.out.with_name(args.out.name + ".summary.json")
    from kpnet_edge.atomic import atomic_write_text

    atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    print(
        f"{totals.images} images: {totals.human_faces} human faces ({totals.human_points} points), "
        f"teacher added {totals.teacher_points} points, {totals.teacher_faces} faces and "
        f"{totals.ignore_regions} ignore regions; {totals.guessed_points} guessed points masked; "
        f"{len(totals.unreadable)} unreadable\nlabels: {args.out}\nsummary: {summary_path}"
    )
    for problem in totals.unreadable:
        print(f"warning: skipped {problem}", file=sys.stderr)
    return 1 if totals.unreadable else 0


def _human_records(args: argparse.Namespace, images: list[Path]) -> dict:
    """Human records keyed by resolved image path ({} with no --human)."""
    from kpnet_edge.data.caltech import load_caltech
    from kpnet_edge.data.retinaface import load_retinaface_labels
    from kpnet_edge.data.voc import load_voc
    from kpnet_edge.errors import KpnetError

    if args.human is None:
        return {}
    kind = args.format or _guess_format(args.human)
    if kind == "caltech":
        records = load_caltech(args.human, args.images)
    elif kind == "voc":
        records = load_voc(args.human, args.images)
    elif kind == "retinaface":
        records = load_retinaface_labels(args.human, args.images)
    else:
        raise KpnetError(f"{args.human}: --format none takes no --human labels")
    return {record.path.resolve(): record for record in records}


def _guess_format(path: Path) -> str:
    from kpnet_edge.errors import KpnetError

    if path.is_dir():
        return "voc"
    if not path.is_file():
        raise KpnetError(f"{path}: no such file or folder")
    first = next((line for line in path.read_text(errors="replace").splitlines() if line.strip()), "")
    if first.startswith("#"):
        return "retinaface"
    if len(first.split()) == 9:
        return "caltech"
    raise KpnetError(f"{path}: cannot tell its format; give --format")
