"""The command line: documented options, JSON output, previews, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marionette.cli import COMMANDS, build_parser, main
from marionette.media import load_image

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.mark.parametrize("command", ["landmarks", "preprocess", "fit-landmarks", "bench", "export-onnx"])
def test_help_documents_every_option(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"{command}: option {action.dest} has no help"
    if command == "preprocess":  # every dataset setting, with its default
        assert "max_frames = 32" in text and "identity_level = 0" in text
    if command == "export-onnx":
        assert "opset = 17" in text and "tolerance = 0.016" in text


def test_parser_is_the_command_table(capsys: pytest.CaptureFixture[str]) -> None:
    """The parser has the table's commands, in its order, each running its handler; `marionette --help`
    lists each with its line; a command's --help lists every field of its settings class (or has it
    as an option of its own)."""
    parsers = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert list(parsers) == [command.name for command in COMMANDS]
    with pytest.raises(SystemExit):
        main(["--help"])
    overview = "".join(capsys.readouterr().out.split())  # without the wrapping
    for command in COMMANDS:
        assert callable(command.run) and parsers[command.name].get_default("func") is command.run
        assert "".join(command.help.split()) in overview, command.name
        if command.settings is None:
            continue
        with pytest.raises(SystemExit):
            main([command.name, "--help"])
        text = capsys.readouterr().out
        options = {flag for action in parsers[command.name]._actions for flag in action.option_strings}
        assert "--set" in options, command.name
        for field in dataclasses.fields(command.settings):
            if field.name in command.skip:
                assert "--" + field.name.replace("_", "-") in options, f"{command.name}: {field.name}"
            else:
                assert f"\n  {field.name} = {field.default!r}  " in text, f"{command.name}: {field.name}"


@pytest.mark.subprocess
@pytest.mark.parametrize("argv", [["--help"], ["verify", "--help"], ["reenact", "--help"]])
def test_help_answers_without_loading_torch_or_mediapipe(argv: list[str]) -> None:
    """The command line imports settings only; a command loads what it runs when it runs."""
    code = ("import sys\nfrom marionette.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mediapipe', 'gradio', 'onnxruntime'}))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: marionette" in done.stdout, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_landmarks_json_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "preview.png"
    assert main(["landmarks", str(ASSETS / "faces" / "02_grace_hopper.jpg"), "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    points = np.array(report["points68"])
    assert points.shape == (68, 3)
    width, height = report["size"]
    assert (points[:, 0] > 0).all() and (points[:, 0] < width).all() and (points[:, 1] < height).all()
    assert abs(report["pose"]["yaw"]) < 15  # an official, frontal portrait
    preview = load_image(out)
    assert preview.shape == (256, 512, 3)
    assert preview[:, 256:].mean() < 30 and preview[:, 256:].max() > 200  # landmark image: black with ink


def test_bad_input_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = tmp_path / "blank.png"
    from marionette.media import save_image

    save_image(blank, np.full((200, 200, 3), 127, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    for path, reason in [(blank, "no face found"), (broken, "cannot read image"), (tmp_path / "missing.jpg", "no such file")]:
        assert main(["landmarks", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(path) in err and reason in err
    assert main(["preprocess", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["preprocess", str(tmp_path), str(tmp_path / "out"), "--set", "max_frame=3"]) == 2
    assert "max_frame=3: unknown PreprocessConfig setting" in capsys.readouterr().err
    for command in (["preprocess", str(tmp_path), str(tmp_path / "out")], ["bench", "model"]):  # one device rule
        with pytest.raises(SystemExit) as e:  # argparse's usage error
            main([*command, "--device", "gpu"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.count("\n") == 0
        assert "--device: gpu: must be one of auto, cpu, cuda, cuda:N, mps" in err


@pytest.mark.subprocess
@pytest.mark.parametrize("command", [["verify", "--json", "IMAGE"], ["verify", "IMAGE"]])
def test_closed_stdout_pipe_ends_quietly(command: list[str], tmp_path: Path) -> None:
    """`marionette verify --json | head`: the reader has gone before the output is written (at the
    end, or as each report is printed)."""
    image = tmp_path / "plain.png"
    Image.new("RGB", (64, 64), (90, 120, 150)).save(image)
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "marionette.cli", *(str(image) if a == "IMAGE" else a for a in command)],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == "", done.stderr
