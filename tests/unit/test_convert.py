"""`cdr-publisher convert`: page, array and JSON-lines input; records out, rejections on stderr."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from publisher.cli import main

SAMPLES_PATH = Path(__file__).parents[1] / "data" / "samples.json"
SAMPLES: list[dict[str, Any]] = orjson.loads(SAMPLES_PATH.read_bytes())["items"]


def _lines(text: str) -> list[Any]:
    return [orjson.loads(line) for line in text.splitlines()]


def _convert(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: bytes
) -> tuple[int, list[Any], list[Any]]:
    path = tmp_path / "input.json"
    path.write_bytes(data)
    code = main(["convert", str(path)])
    captured = capsys.readouterr()
    return code, _lines(captured.out), _lines(captured.err)


def test_a_page_converts_every_sample(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The samples as a Webex page: five flat records, nothing on stderr, exit 0."""
    code, out, err = _convert(capsys, tmp_path, SAMPLES_PATH.read_bytes())

    assert code == 0
    assert err == []
    assert [record["report_id"] for record in out] == [item["Report ID"] for item in SAMPLES]
    real = out[2]
    assert real["ring_duration"] == 0
    assert real["answered"] is False
    assert real["start_time"] == "2026-09-24T07:49:10.939Z"
    assert "os_type" not in real
    assert "_unknown" not in real
    assert out[0]["release_time"] == "2023-10-12T21:22:32.621Z"


def test_unknown_keys_are_written_under_unknown(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A record with a key the table does not know keeps it under "_unknown" as it came."""
    data = orjson.dumps([{"Report ID": "r-1", "Shiny New Key": {"x": [1]}, "Duration": "5"}])

    code, out, _err = _convert(capsys, tmp_path, data)

    assert code == 0
    assert out == [{"report_id": "r-1", "duration": 5, "_unknown": {"Shiny New Key": {"x": [1]}}}]


def test_an_array_with_bad_records_exits_1_and_reports_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Good records go to stdout; each bad one is a JSON line on stderr with reason and raw."""
    data = orjson.dumps([SAMPLES[3], 5, {"Report ID": "r-2", "Duration": "long"}])

    code, out, err = _convert(capsys, tmp_path, data)

    assert code == 1
    assert [record["report_id"] for record in out] == [SAMPLES[3]["Report ID"]]
    assert err == [
        {"position": 2, "reason": "not a JSON object (got a number)", "raw": "5"},
        {
            "position": 3,
            "reason": "duration ('Duration'): 'long' is not a whole number",
            "raw": '{"Report ID":"r-2","Duration":"long"}',
        },
    ]


def test_json_lines_keep_each_bad_line_as_it_was(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """JSON lines: blank lines skipped, a line that is not JSON is rejected with its line number."""
    lines = [
        orjson.dumps(SAMPLES[2]),
        b"",
        b'{"Report ID":  "r-3", "Answered": "maybe"}',
        b"{not json",
        orjson.dumps(SAMPLES[4]),
    ]

    code, out, err = _convert(capsys, tmp_path, b"\n".join(lines) + b"\n")

    assert code == 1
    assert [r["report_id"] for r in out] == [SAMPLES[2]["Report ID"], SAMPLES[4]["Report ID"]]
    assert [(e["position"], e["raw"]) for e in err] == [
        (3, '{"Report ID":  "r-3", "Answered": "maybe"}'),
        (4, "{not json"),
    ]
    assert err[0]["reason"] == "answered ('Answered'): 'maybe' is not true or false"
    assert err[1]["reason"].startswith("not JSON: ")


def test_a_single_record_object_is_one_json_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """One record on its own (not a page) converts as a one-line input."""
    code, out, _err = _convert(
        capsys, tmp_path, orjson.dumps(SAMPLES[4], option=orjson.OPT_INDENT_2)
    )

    assert code == 0
    assert [r["report_id"] for r in out] == [SAMPLES[4]["Report ID"]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello world\nmore words\n", "input is neither JSON nor JSON lines"),
        (b'"just a string"', "input is JSON but not a page, an array or a record (got a string)"),
        (b'{"items": {"a": 1}}', "input is a JSON object whose 'items' is not a list"),
    ],
)
def test_unreadable_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: bytes, message: str
) -> None:
    """Input that is not JSON, JSON lines, a page or an array: one line on stderr, exit 2."""
    path = tmp_path / "input.json"
    path.write_bytes(data)

    code = main(["convert", str(path)])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith(f"cdr-publisher convert: {message}")
    assert captured.err.count("\n") == 1


def test_a_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A file that is not there: one line naming it, exit 2, no traceback."""
    missing = tmp_path / "nope.json"

    code = main(["convert", str(missing)])

    captured = capsys.readouterr()
    assert code == 2
    assert (
        captured.err == f"cdr-publisher convert: cannot read {missing}: No such file or directory\n"
    )


def test_empty_input_is_zero_records(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An empty file is JSON lines with no lines: nothing out, exit 0."""
    code, out, err = _convert(capsys, tmp_path, b"")

    assert (code, out, err) == (0, [], [])


def test_dash_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`convert -` reads the page from standard input."""
    stdin = io.TextIOWrapper(io.BytesIO(SAMPLES_PATH.read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)

    code = main(["convert", "-"])

    assert code == 0
    assert len(_lines(capsys.readouterr().out)) == len(SAMPLES)
    stdin.close()


def test_the_installed_command_reads_stdin_by_default() -> None:
    """A real process: JSON lines on stdin, records on stdout, rejection on stderr, exit 1."""
    data = orjson.dumps(SAMPLES[2]) + b"\n" + b"[1, 2]\n"

    proc = subprocess.run(
        [sys.executable, "-m", "publisher", "convert"],
        input=data,
        capture_output=True,
        check=False,
    )

    assert proc.returncode == 1
    assert [r["report_id"] for r in _lines(proc.stdout.decode())] == [SAMPLES[2]["Report ID"]]
    assert _lines(proc.stderr.decode()) == [
        {"position": 2, "reason": "not a JSON object (got an array)", "raw": "[1, 2]"}
    ]
