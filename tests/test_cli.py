"""The `voice-tutor` command as a learner or a teacher runs it: real subprocesses, real models."""

from __future__ import annotations

import json

import pytest
import soundfile

from audio_fixtures import wer_text, write_wav
from conftest import error_lines
from voice_tutor.cli import build_parser

pytestmark = pytest.mark.slow


def subcommands() -> list[str]:
    parser = build_parser()
    [action] = [a for a in parser._actions if a.dest == "command"]
    return sorted(action.choices)


def test_say_then_transcribe_round_trip(run_cli, tmp_path):
    sentence = "Seven plus five is twelve."
    wav = tmp_path / "said.wav"
    said = run_cli("say", sentence, "-o", wav)
    assert said.returncode == 0, said.stderr
    assert "Traceback" not in said.stderr and said.stdout == ""
    info = soundfile.info(wav)
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    assert 1.0 < info.duration < 4.0
    assert f"to {wav}" in said.stderr  # the progress line says where it went

    heard = run_cli("transcribe", "--json", wav)
    assert heard.returncode == 0, heard.stderr
    [record] = [json.loads(line) for line in heard.stdout.splitlines()]
    assert set(record) == {"file", "text", "language", "duration_s", "elapsed_ms", "real_time_factor"}
    assert record["file"] == str(wav)
    assert wer_text(record["text"]) == wer_text(sentence) == "7 plus 5 is 12"
    assert record["language"] == "en"
    assert record["duration_s"] == pytest.approx(info.duration, abs=0.01)
    assert record["elapsed_ms"] > 0
    assert record["real_time_factor"] == pytest.approx(record["elapsed_ms"] / 1000 / record["duration_s"], rel=0.05)


def test_transcribe_plain_text_one_line_per_file(run_cli, say, tmp_path):
    first, second = tmp_path / "first.wav", tmp_path / "second.wav"
    write_wav(first, say("Twelve."))
    write_wav(second, say("Please read the next paragraph out loud.", 1.1))
    result = run_cli("transcribe", first, second)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [wer_text(line) for line in lines] == ["12", "please read the next paragraph out loud"]


def test_top_level_help_lists_the_commands(run_cli):
    result = run_cli("--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: voice-tutor")
    for command in ("transcribe", "say", "talk"):
        assert command in result.stdout


@pytest.mark.parametrize("command", subcommands())
def test_help_for_each_command(run_cli, command):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"usage: voice-tutor {command}")


def test_talk_help_names_its_options(run_cli):
    result = run_cli("talk", "--help")
    for option in ("--input", "--output", "--fast", "--json", "--lesson", "--llm-url", "--llm-model", "--config"):
        assert option in result.stdout


def test_version(run_cli):
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip().startswith("voice-tutor ")


@pytest.mark.parametrize(
    "args",
    [(), ("teleport",), ("say", "hello"), ("transcribe",), ("talk", "--device", "tpu")],
)
def test_usage_errors_exit_2_without_a_traceback(run_cli, args):
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "usage: voice-tutor" in result.stderr and "error:" in result.stderr


def test_a_bad_config_file_is_one_error_line(run_cli, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[stt]\nmodle = 'tiny'\n")
    wav = tmp_path / "a.wav"
    result = run_cli("say", "Twelve.", "-o", wav, "--config", config)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [f"voice-tutor: error: {config}: [stt].modle: unknown key"]
    assert not wav.exists()


def test_unknown_lesson_is_one_error_line(run_cli, tmp_path):
    result = run_cli("talk", "--fast", "--input", tmp_path / "x.wav", "--lesson", "astrophysics")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "no lesson 'astrophysics'" in line and "arithmetic" in line


def test_an_unknown_language_is_one_error_line(run_cli, say, tmp_path):
    wav = write_wav(tmp_path / "a.wav", say("Twelve."))
    result = run_cli("transcribe", "--language", "xx", wav)
    assert "Traceback" not in result.stderr
    assert result.returncode != 0
    [line] = error_lines(result.stderr)
    assert "'xx'" in line
