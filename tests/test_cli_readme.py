"""The README's first command and its 30-second tour, run as written, so they stay true: the
Python snippet, and every `kpnet-edge detect` line that needs no converted model (on a folder of
photos and a clip made here); every tour line parses with the CLI's own parser."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from kpnet_edge.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TOUR = README[README.index("## A 30-second tour"):]
PYTHON = re.search(r"```python\n(.*?)```", TOUR, re.S).group(1)
TOUR_LINES = [line.split("#", 1)[0].strip()
              for line in re.search(r"```bash\n(.*?)```", TOUR, re.S).group(1).splitlines()
              if line.startswith("kpnet-edge ")]
FIRST_DETECT = next(line for line in README.splitlines() if "kpnet-edge detect examples/" in line)


def cli_args(line: str) -> list[str]:
    """The arguments of a `kpnet-edge ...` line (any `.venv/bin/` prefix and `./setup.sh &&` dropped)."""
    words = shlex.split(line.split("&&")[-1].split("#", 1)[0])
    assert words[0].endswith("kpnet-edge"), line
    return words[1:]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with examples/, photos/ (two copies of the example) and a 5-frame clip.mp4."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "photos" / "more").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "group.jpg", tmp_path / "photos" / "group.jpg")
    shutil.copy(ROOT / "examples" / "group.jpg", tmp_path / "photos" / "more" / "group.jpg")
    frame = cv2.resize(cv2.imread(str(ROOT / "examples" / "group.jpg")), (320, 320))
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 320))
    for _ in range(5):
        writer.write(frame)
    writer.release()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_python_snippet_runs_and_prints_each_face(workdir: Path):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        namespace: dict = {}
        exec(compile(PYTHON, "README.md (python)", "exec"), namespace)  # noqa: S102 - our own README
    faces = namespace["detector"].detect(cv2.imread("examples/group.jpg"))
    assert len(printed.getvalue().strip().splitlines()) >= len(faces)


def test_the_first_command_writes_the_json_and_an_annotated_copy(workdir: Path):
    assert main(cli_args(FIRST_DETECT)) == 0
    [record] = json.loads((workdir / "out" / "detections.json").read_text())
    assert record["image"] == "examples/group.jpg" and (record["width"], record["height"]) == (416, 416)
    assert cv2.imread(str(workdir / "out" / "group.jpg")).shape == (416, 416, 3)


def test_the_tour_detect_lines_run(workdir: Path):
    lines = [line for line in TOUR_LINES if line.startswith("kpnet-edge detect") and "--model" not in line]
    assert len(lines) == 2, f"expected the folder and the video line: {lines}"
    for line in lines:
        args = cli_args(line)
        assert main(args) == 0, line
        records = json.loads(Path(args[args.index("--json") + 1]).read_text())
        expected = 2 if args[1] == "photos/" else 5
        assert len(records) == expected, line
        if "--draw" in args:
            drawn = Path(args[args.index("--draw") + 1])
            assert (drawn / "group.jpg").is_file() and (drawn / "more" / "group.jpg").is_file()


def test_every_tour_line_parses(monkeypatch: pytest.MonkeyPatch):
    assert len(TOUR_LINES) >= 7
    for line in TOUR_LINES:
        args = cli_args(line)
        try:
            build_parser(args).parse_args(args)
        except SystemExit as error:
            pytest.fail(f"README line does not parse ({error}): {line}")
