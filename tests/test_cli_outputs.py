"""`report --out` and `eval --json` check their output paths before any work: one clear line,
exit code 2, nothing written and nothing the user had touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kpnet_edge.cli import main


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    return path


def check_refused(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_report_out_onto_a_file_is_refused_before_the_run(notes: Path, tmp_path: Path, capsys):
    check_refused(["report", "--model", str(tmp_path / "models"), "--out", str(notes)],
                  f"--out {notes}: is a file; give a folder", tmp_path, capsys)


def test_report_out_under_sys_is_refused(tmp_path: Path, capsys):
    check_refused(["report", "--model", str(tmp_path / "models"), "--out", "/sys/kpnet-report"],
                  "--out /sys/kpnet-report: cannot write in /sys", tmp_path, capsys)


@pytest.mark.parametrize("make_target,message", [
    (lambda t: t, "is a folder; give a file path"),
    (lambda t: t / "notes.txt" / "results.json", "notes.txt is a file, so no folder can be made"),
])
def test_eval_json_is_checked_before_scoring(make_target, message, notes: Path, tmp_path: Path, capsys):
    predictions = tmp_path / "faces.json"
    predictions.write_text(json.dumps([]))
    target = make_target(tmp_path)
    check_refused(["eval", str(predictions), "--wider-gt", str(tmp_path / "gt.txt"), "--json", str(target)],
                  f"--json {target}: {message}" if "folder;" in message else message, tmp_path, capsys)


def test_report_models_must_name_models_of_the_folder(tmp_path: Path, capsys):
    shipped = Path(__file__).resolve().parent.parent / "kpnet_edge" / "assets"
    if not (shipped / "manifest.json").is_file():
        pytest.skip("no converted models shipped in kpnet_edge/assets")
    check_refused(["report", "--model", str(shipped), "--models", "tflite-int8,onnx-int8", "--out",
                   str(tmp_path / "out")], "--models tflite-int8,onnx-int8: onnx-int8 not in", tmp_path, capsys)
