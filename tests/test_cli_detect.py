"""`kpnet-edge detect`: the JSON it writes, and one clear line with exit code 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kpnet_edge.checkpoint import save_checkpoint
from kpnet_edge.cli import main
from kpnet_edge.model import DRNet

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "group.jpg"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(DRNet(stem=8, mid=16, deep=32, head=8), path)
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("a.jpg", (120, 160, 3)), ("b.png", (90, 60)), ("c.png", (50, 70, 4))):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, shape, dtype=np.uint8))
    return folder


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_folder_gives_one_record_per_image(images, weights, tmp_path, capsys):
    out = tmp_path / "out.json"
    code, _, _ = run_cli(["detect", str(images), "--weights", str(weights), "--json", str(out),
                          "--draw", str(tmp_path / "drawn")], capsys)
    assert code == 0
    records = json.loads(out.read_text())
    assert [Path(r["image"]).name for r in records] == ["a.jpg", "b.png", "c.png"]
    assert [(r["width"], r["height"]) for r in records] == [(160, 120), (60, 90), (70, 50)]
    for record in records:
        for face in record["faces"]:
            assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and 0 <= face["score"] <= 1
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["a.jpg", "b.jpg", "c.jpg"]


def test_single_image_prints_json_to_stdout(weights, capsys):
    code, out, _ = run_cli(["detect", str(EXAMPLE), "--weights", str(weights)], capsys)
    assert code == 0
    [record] = json.loads(out)
    assert (record["width"], record["height"]) == (416, 416)


def test_video_frames_are_records(weights, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    code, out, _ = run_cli(["detect", str(video), "--weights", str(weights)], capsys)
    assert code == 0
    assert [r["image"].rsplit("#", 1)[1] for r in json.loads(out)] == ["frame=0", "frame=1", "frame=2"]


def test_folder_with_a_bad_image_processes_the_rest(images, weights, tmp_path, capsys):
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out = tmp_path / "out.json"
    code, _, err = run_cli(["detect", str(images), "--weights", str(weights), "--json", str(out)], capsys)
    assert code == 1
    assert "broken.jpg" in err
    assert len(json.loads(out.read_text())) == 3


def truncated_jpeg(tmp_path: Path) -> Path:
    data = EXAMPLE.read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def not_an_image(tmp_path: Path) -> Path:
    path = tmp_path / "notes.jpg"
    path.write_text("hello")
    return path


def empty_folder(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "make_source,message",
    [
        (lambda t: t / "missing.jpg", "missing.jpg: no such file or folder"),
        (not_an_image, "notes.jpg: not a readable image"),
        (truncated_jpeg, "cut.jpg: truncated JPEG"),
        (empty_folder, "empty: no images found"),
    ],
)
def test_bad_sources_fail_with_one_clear_line(make_source, message, weights, tmp_path, capsys):
    source = make_source(tmp_path)
    code, out, err = run_cli(["detect", str(source), "--weights", str(weights)], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_checkpoints_fail_with_one_clear_line(tmp_path, capsys):
    torch.save({"layer.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pt")
    torch.save(DRNet(stem=8, mid=16, deep=32, head=8).state_dict(), tmp_path / "shapes.pt")
    for name, message in (("wrong.pt", "not a DRNet state dict"), ("shapes.pt", "shape mismatch"),
                          ("absent.pt", "no such checkpoint file")):
        code, _, err = run_cli(["detect", str(EXAMPLE), "--weights", str(tmp_path / name)], capsys)
        assert code == 2, name
        assert f"{name}: {message}" in err
        assert "Traceback" not in err
