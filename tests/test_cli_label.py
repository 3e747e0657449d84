"""`kpnet-edge label` end to end: a teacher completes a folder's labels into a label.txt the
trainer reads, with a summary of what came from where; bad input is one line, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from kpnet_edge.cli import main
from kpnet_edge.data.retinaface import load_retinaface_labels

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "group.jpg"


def test_label_completes_voc_boxes_and_reports_unreadable_files(tmp_path: Path, yunet_dir: Path, capsys) -> None:
    images = tmp_path / "photos"
    (images / "sub").mkdir(parents=True)
    shutil.copy(EXAMPLE, images / "sub" / "group.jpg")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    notes = tmp_path / "voc"
    notes.mkdir()
    # One human box far from any face: the teacher's faces all stay teacher faces or doubts.
    (notes / "group.xml").write_text(
        "<annotation><filename>sub/group.jpg</filename><object><name>face</name><bndbox>"
        "<xmin>0</xmin><ymin>0</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object></annotation>"
    )
    out = tmp_path / "labels" / "label.txt"
    code = main(["label", str(images), "--teacher", str(yunet_dir / "yunet_n_320_320.onnx"),
                 "--teacher-size", "320", "--human", str(notes), "--out", str(out)])
    assert code == 1, "an unreadable image is skipped and reported, with exit 1"
    printed = capsys.readouterr()
    assert "broken.jpg" in printed.err and "Traceback" not in printed.err
    summary = json.loads(out.with_name("label.txt.summary.json").read_text())
    assert summary["images"] == 1 and summary["human_faces"] == 1 and len(summary["unreadable"]) == 1
    assert summary["teacher_faces"] >= 3, "the teacher finds the group's faces nobody labelled"
    record = load_retinaface_labels(out, images, min_quality=summary["min_quality_for_training"])[0]
    assert record.path == images / "sub" / "group.jpg"
    np.testing.assert_allclose(record.boxes[0], [0, 0, 10, 10], atol=0.01)
    assert (~record.ignore).sum() == 1 + summary["teacher_faces"]
    assert record.ignore.sum() == summary["ignore_regions"]
    assert record.visible[1:][~record.ignore[1:]].all(), "teacher faces come with all five points"


def test_label_refuses_a_folder_as_output_in_one_line(tmp_path: Path, yunet_dir: Path, capsys) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    shutil.copy(EXAMPLE, images / "a.jpg")
    code = main(["label", str(images), "--teacher", str(yunet_dir / "yunet_n_320_320.onnx"),
                 "--teacher-size", "320", "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2 and "is a folder" in error and "Traceback" not in error
