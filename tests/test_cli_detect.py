"""`kpnet-edge detect`: the JSON it writes, drawings that never overwrite each other, outputs checked
before any work, damaged inputs warned about, partial results kept on SIGINT / SIGTERM, and one
clear line with exit code 2 for bad input or refused weights."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kpnet_edge import imageio
from kpnet_edge.checkpoint import MAX_WIDTH, save_checkpoint
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


@pytest.mark.parametrize("read_ahead", [[], ["--read-ahead", "0"], ["--read-ahead", "1"], ["--overlap", "--batch", "2"]])
def test_folder_gives_one_record_per_image(read_ahead, images, weights, tmp_path, capsys):
    out = tmp_path / "out.json"
    code, _, _ = run_cli(["detect", str(images), "--weights", str(weights), "--json", str(out),
                          "--draw", str(tmp_path / "drawn"), *read_ahead], capsys)
    assert code == 0
    records = json.loads(out.read_text())
    assert [Path(r["image"]).name for r in records] == ["a.jpg", "b.png", "c.png"]
    assert [(r["width"], r["height"]) for r in records] == [(160, 120), (60, 90), (70, 50)]
    for record in records:
        for face in record["faces"]:
            assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and 0 <= face["score"] <= 1
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["a.jpg", "b.png", "c.png"]


def test_single_image_prints_json_to_stdout(weights, capsys):
    code, out, _ = run_cli(["detect", str(EXAMPLE), "--weights", str(weights)], capsys)
    assert code == 0
    [record] = json.loads(out)
    assert (record["width"], record["height"]) == (416, 416)


def write_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


def test_video_frames_are_records_and_numbered_drawings(weights, tmp_path, capsys):
    video = write_video(tmp_path / "clip.avi", 3)
    code, out, _ = run_cli(["detect", str(video), "--weights", str(weights), "--draw", str(tmp_path / "d")],
                           capsys)
    assert code == 0
    assert [r["image"].rsplit("#", 1)[1] for r in json.loads(out)] == ["frame=0", "frame=1", "frame=2"]
    drawn = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert drawn == ["clip_frame000000.jpg", "clip_frame000001.jpg", "clip_frame000002.jpg"]


def test_same_named_images_in_sub_folders_get_their_own_drawings(weights, tmp_path, capsys):
    source = tmp_path / "photos"
    for index, folder in enumerate(("x", "y")):
        (source / folder).mkdir(parents=True)
        cv2.imwrite(str(source / folder / "a.jpg"), np.full((40, 50, 3), 60 * (index + 1), np.uint8))
    code, _, _ = run_cli(["detect", str(source), "--weights", str(weights), "--json", str(tmp_path / "f.json"),
                          "--draw", str(tmp_path / "d")], capsys)
    assert code == 0
    drawings = [tmp_path / "d" / "x" / "a.jpg", tmp_path / "d" / "y" / "a.jpg"]
    means = [cv2.imread(str(p)).mean() for p in drawings]
    assert abs(means[0] - 60) < 3 and abs(means[1] - 120) < 3, f"each drawing is of its own image: {means}"


def test_video_that_ends_before_its_stated_frame_count_warns_and_exits_1(weights, tmp_path, capsys):
    data = write_video(tmp_path / "whole.avi", 30).read_bytes()
    video = tmp_path / "cut.avi"
    video.write_bytes(data[: int(len(data) * 0.6)])  # the header still says 30 frames
    out = tmp_path / "faces.json"
    code, _, err = run_cli(["detect", str(video), "--weights", str(weights), "--json", str(out)], capsys)
    records = json.loads(out.read_text())
    assert code == 1, err
    assert 0 < len(records) < 30
    assert f"cut.avi: the video ended after {len(records)} of the 30 frames" in err


def test_jpeg_with_bytes_after_its_end_marker_is_read_without_a_warning(weights, tmp_path, capsys):
    photo = tmp_path / "motion.jpg"  # a "motion photo": a clip, which holds FF D9 too, after the JPEG
    photo.write_bytes(EXAMPLE.read_bytes() + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8 + b"\xff\xd9")
    code, out, err = run_cli(["detect", str(photo), "--weights", str(weights)], capsys)
    assert code == 0, err
    assert "warning" not in err and "truncated" not in err
    assert [(r["width"], r["height"]) for r in json.loads(out)] == [(416, 416)]


def test_a_cut_off_jpeg_the_decoder_accepts_is_used_with_a_warning(images, weights, tmp_path, capsys,
                                                                  monkeypatch):
    # OpenCV 4.14 refuses cut-off JPEGs (see test_bad_sources...); other builds fill the rest grey.
    cut = truncated_jpeg(images)
    decode = cv2.imdecode
    monkeypatch.setattr(imageio.cv2, "imdecode", lambda data, flags: decode(data, flags) if data.size != cut.stat()
                        .st_size else np.full((416, 416, 3), 128, np.uint8))
    out = tmp_path / "out.json"
    code, _, err = run_cli(["detect", str(images), "--weights", str(weights), "--json", str(out)], capsys)
    assert code == 1
    assert "cut.jpg: damaged JPEG" in err
    assert [Path(r["image"]).name for r in json.loads(out.read_text())] == ["a.jpg", "b.png", "c.png", "cut.jpg"]


@pytest.mark.parametrize("read_ahead", [["--read-ahead", "0"], ["--read-ahead", "4"], ["--overlap", "--batch", "1"]])
def test_folder_with_a_bad_image_processes_the_rest(read_ahead, images, weights, tmp_path, capsys):
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out = tmp_path / "out.json"
    code, _, err = run_cli(["detect", str(images), "--weights", str(weights), "--json", str(out),
                            *read_ahead], capsys)
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


def test_refused_pickle_gets_our_message_not_torch_advice(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": RunsCode()}, path)
    code, _, err = run_cli(["detect", str(EXAMPLE), "--weights", str(path)], capsys)
    assert code == 2
    assert "evil.pt: refused: the file holds Python objects other than tensors" in err
    assert "weights_only" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "pwned").exists()


class RunsCode:
    """A pickle that would create a file when unpickled without weights_only."""

    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "pwned",))


@pytest.mark.parametrize("widths,message", [
    ({"stem": 10**6, "mid": 10**6, "deep": 10**6, "head": 10**6}, f"is not a whole number in [1, {MAX_WIDTH}]"),
    ({"stem": MAX_WIDTH - 96, "mid": MAX_WIDTH - 48, "deep": MAX_WIDTH, "head": 8}, "shape mismatch"),
    ({"stem": 8, "trunk": 16}, "unknown DRNet widths ['trunk']"),
    ({"stem": "8"}, "is not a whole number"),
])
def test_absurd_widths_are_refused_before_anything_is_built(widths, message, tmp_path, capsys):
    # 4096 wide everywhere would take gigabytes to build; the shapes are checked on the meta device.
    path = tmp_path / "wide.pt"
    tiny = DRNet(stem=8, mid=16, deep=32, head=8)
    torch.save({"format": "kpnet-edge/drnet", "widths": widths, "state_dict": tiny.state_dict()}, path)
    code, _, err = run_cli(["detect", str(EXAMPLE), "--weights", str(path)], capsys)
    assert code == 2
    assert "wide.pt: " in err and message in err, err


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(value, tmp_path, capsys):
    model = DRNet(stem=8, mid=16, deep=32, head=8)
    with torch.no_grad():
        model.scale_head.weight[0, 0, 0, 0] = value
    path = tmp_path / "nan.pt"
    save_checkpoint(model, path)
    code, _, err = run_cli(["detect", str(EXAMPLE), "--weights", str(path)], capsys)
    assert code == 2
    assert "nan.pt: the weights hold NaN or infinite values (in scale_head.weight)" in err


def folder_target(tmp_path: Path) -> Path:
    (tmp_path / "existing").mkdir()
    return tmp_path / "existing"


def file_target(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("keep me")
    return tmp_path / "notes.txt"


@pytest.mark.parametrize("flag,make_target,message", [
    ("--json", folder_target, "is a folder; give a file path"),
    ("--json", lambda t: file_target(t) / "faces.json", "notes.txt is a file, so no folder can be made"),
    ("--json", lambda t: Path("/sys/kernel/faces.json"), "cannot write in /sys/kernel"),
    ("--json", lambda t: Path("/proc/faces.json"), "cannot write in /proc"),
    ("--json", lambda t: Path("/dev/null"), "not a regular file"),
    ("--draw", file_target, "is a file; give a folder"),
    ("--draw", lambda t: t / "images" / "drawn", "is inside the source folder"),
])
def test_bad_output_paths_fail_before_any_work(flag, make_target, message, images, weights, tmp_path, capsys,
                                                monkeypatch):
    from kpnet_edge.detector import FaceDetector

    target = make_target(tmp_path)
    before = sorted(tmp_path.rglob("*"))

    def no_work(*args, **kwargs):
        raise AssertionError("the detector was built before the outputs were checked")

    monkeypatch.setattr(FaceDetector, "from_artifacts", no_work)
    code, out, err = run_cli(["detect", str(images), "--weights", str(weights), flag, str(target)], capsys)
    assert code == 2
    assert f"{flag} {target}" in err and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and out == ""
    assert sorted(tmp_path.rglob("*")) == before, "something was written"
    if (tmp_path / "notes.txt").exists():
        assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_writes_the_records_so_far_atomically(signal_number, weights, tmp_path):
    source = tmp_path / "many"
    source.mkdir()
    rng = np.random.default_rng(0)
    total = 1500
    for index in range(total):
        cv2.imwrite(str(source / f"{index:04d}.png"), rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
    out, log = tmp_path / "faces.json", tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "kpnet_edge.cli", "detect", str(source), "--weights", str(weights),
               "--json", str(out), "--batch", "1"]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stderr=stderr, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not re.search(r"\b[1-9]\d*/1500\b", log.read_text()):
            time.sleep(0.05)
        process.send_signal(signal_number)
        code = process.wait(timeout=60)
    err = log.read_text()
    assert code == 128 + signal_number, err[-2000:]
    records = json.loads(out.read_text())
    assert 0 < len(records) < total
    name = signal.Signals(signal_number).name
    assert f"interrupted by {name}: {len(records)} of {total} images in {out}" in err
    assert [r["image"] for r in records] == [str(source / f"{i:04d}.png") for i in range(len(records))]
    assert not list(tmp_path.glob(".faces.json.*")), "a temporary file was left behind"
