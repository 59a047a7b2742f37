"""Bad input never ends in a traceback: each case is a sensible result or one clear error line.

Covers what a learner's recording or a misconfigured machine can hand the
tutor: empty, silent, odd-format, noisy, truncated, NaN-filled, non-audio and
missing files; missing and corrupt models; an LLM endpoint that is down.
Everything runs the real `voice-tutor` command and the real models.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audio_fixtures import SAMPLE_RATE, heard_numbers, silence, wer_text
from conftest import error_lines
from voice_tutor.audio.sources import AudioInputError, FileSource, load_audio

pytestmark = pytest.mark.slow


def truncated_wav(path: Path, speech: np.ndarray) -> Path:
    """A WAV whose header promises three times the data that follows it."""
    pcm = (np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes()
    promised = 3 * len(pcm)
    header = (
        b"RIFF" + struct.pack("<I", 36 + promised) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data" + struct.pack("<I", promised)
    )
    path.write_bytes(header + pcm)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, say) -> dict[str, Path]:
    """Every kind of awkward input, by name; 'missing' is a path that does not exist."""
    root = tmp_path_factory.mktemp("bad-input")
    twelve = say("Twelve.")
    files: dict[str, Path] = {}

    files["empty"] = root / "empty.wav"
    files["empty"].write_bytes(b"")

    files["header_only"] = root / "header_only.wav"
    soundfile.write(files["header_only"], np.zeros(0, np.float32), SAMPLE_RATE, subtype="PCM_16")

    files["silence"] = root / "silence.wav"
    soundfile.write(files["silence"], silence(2.0), SAMPLE_RATE, subtype="PCM_16")

    # 'Twelve.' at 8 kHz, two channels (the second quieter), int16.
    import soxr

    at_8k = soxr.resample(twelve, SAMPLE_RATE, 8000)
    stereo = np.stack([at_8k, 0.5 * at_8k], axis=1)
    files["stereo_8k_int16"] = root / "stereo_8k.wav"
    soundfile.write(files["stereo_8k_int16"], (stereo * 32767).astype(np.int16), 8000, subtype="PCM_16")

    files["float32_48k"] = root / "float_48k.wav"
    soundfile.write(files["float32_48k"], soxr.resample(twelve, SAMPLE_RATE, 48000).astype(np.float32), 48000,
                    subtype="FLOAT")

    rng = np.random.default_rng(0)
    files["clipped_noise"] = root / "noise.wav"
    soundfile.write(files["clipped_noise"], np.clip(rng.normal(0, 1, 2 * SAMPLE_RATE), -1, 1), SAMPLE_RATE,
                    subtype="PCM_16")

    files["truncated"] = truncated_wav(root / "truncated.wav", np.concatenate([silence(0.3), twelve, silence(0.3)]))

    with_nans = np.concatenate([silence(0.3), twelve, silence(0.3)]).astype(np.float32)
    with_nans[::97] = np.nan
    with_nans[5] = np.inf
    files["nan_samples"] = root / "nan.wav"
    soundfile.write(files["nan_samples"], with_nans, SAMPLE_RATE, subtype="FLOAT")

    files["not_audio"] = root / "notes.wav"
    files["not_audio"].write_text("These are my maths notes, not a recording.\n" * 50)

    files["missing"] = root / "missing.wav"
    return files


# What `voice-tutor transcribe` must say for each input: a transcript, or an error (exit != 0).
TRANSCRIPTS = {
    "header_only": "",
    "silence": "",
    "stereo_8k_int16": "12",
    "float32_48k": "12",
    "truncated": "12",
    "nan_samples": "12",
}
ERRORS = {
    "empty": "cannot decode audio",
    "not_audio": "cannot decode audio",
    "missing": "no such file",
}


def assert_one_error_line(result, *expected: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith("voice-tutor: error: ")
    for text in expected:
        assert text in line
    return line


def assert_clean_success(result) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # Nothing on stderr but progress and, for NaN input, the warning that it was replaced by silence.
    for line in error_lines(result.stderr):
        assert "WARNING" in line and "NaN" in line, line


# --- load_audio / FileSource, in process ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS) + ["clipped_noise"])
def test_load_audio_gives_clean_16k_mono(inputs, name):
    audio = load_audio(inputs[name])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.isfinite(audio).all()
    assert np.abs(audio).max(initial=0) <= 1.0
    source = FileSource(inputs[name], realtime=False)
    assert source.duration_s == pytest.approx(len(audio) / SAMPLE_RATE)


def test_load_audio_resamples_and_mixes_down(inputs, say):
    twelve = say("Twelve.")
    for name in ("stereo_8k_int16", "float32_48k"):
        audio = load_audio(inputs[name])
        assert len(audio) / SAMPLE_RATE == pytest.approx(len(twelve) / SAMPLE_RATE, abs=0.01)
    # The two channels are averaged: (1 + 0.5) / 2 of the mono level.
    stereo = load_audio(inputs["stereo_8k_int16"])
    assert np.abs(stereo).max() == pytest.approx(0.75 * np.abs(load_audio(inputs["float32_48k"])).max(), rel=0.1)


def test_truncated_wav_keeps_the_samples_that_are_there(inputs, say):
    audio = load_audio(inputs["truncated"])
    assert len(audio) / SAMPLE_RATE == pytest.approx(0.6 + len(say("Twelve.")) / SAMPLE_RATE, abs=0.01)


def test_nan_samples_become_silence(inputs):
    audio = load_audio(inputs["nan_samples"])
    raw, _ = soundfile.read(inputs["nan_samples"], dtype="float32")
    bad = ~np.isfinite(raw)
    assert bad.sum() > 100
    assert (audio[bad] == 0).all()


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_load_audio_refuses_unreadable_files_clearly(inputs, name):
    with pytest.raises(AudioInputError) as caught:
        load_audio(inputs[name])
    message = str(caught.value)
    assert str(inputs[name]) in message and ERRORS[name] in message and "\n" not in message
    with pytest.raises(AudioInputError):
        FileSource(inputs[name])


# --- voice-tutor transcribe --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transcribed(inputs, run_cli):
    """One `voice-tutor transcribe --json` over every readable input (the model loads once)."""
    names = sorted(TRANSCRIPTS) + ["clipped_noise"]
    result = run_cli("transcribe", "--json", *(inputs[name] for name in names))
    assert_clean_success(result)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(inputs[name]) for name in names]
    return dict(zip(names, records, strict=True))


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_transcribe_cli_gives_a_sensible_transcript(transcribed, name):
    record = transcribed[name]
    assert wer_text(record["text"]) == TRANSCRIPTS[name]
    assert record["language"] == "en"
    assert record["duration_s"] >= 0 and record["elapsed_ms"] >= 0
    assert record["real_time_factor"] >= 0


def test_transcribe_cli_survives_clipped_noise(transcribed):
    record = transcribed["clipped_noise"]
    assert record["duration_s"] == pytest.approx(2.0)
    assert record["text"] == ""  # no words are invented from noise (see the next test)


def test_clipped_noise_is_transcribed_as_nothing(inputs, recognizer, tmp_path):
    heard = {}
    for seed in range(6):
        noise = np.clip(np.random.default_rng(seed).normal(0, 1, 2 * SAMPLE_RATE), -1, 1)
        soundfile.write(tmp_path / "noise.wav", noise, SAMPLE_RATE, subtype="PCM_16")
        heard[seed] = recognizer.transcribe(load_audio(tmp_path / "noise.wav")).text
    assert heard == dict.fromkeys(range(6), "")


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_transcribe_cli_reports_unreadable_files_in_one_line(inputs, run_cli, name):
    result = run_cli("transcribe", inputs[name])
    assert_one_error_line(result, str(inputs[name]), ERRORS[name])
    assert result.stdout == ""


def test_transcribe_cli_goes_on_after_a_bad_file(inputs, run_cli):
    result = run_cli("transcribe", inputs["missing"], inputs["float32_48k"])
    assert result.returncode != 0  # one file failed
    assert "Traceback" not in result.stderr
    assert len(error_lines(result.stderr)) == 1
    assert wer_text(result.stdout) == "12"  # the good file was still transcribed


# --- voice-tutor talk --input ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_talk_reports_unreadable_input_in_one_line(inputs, run_cli, tmp_path, name):
    result = run_cli("talk", "--fast", "--json", "--input", inputs[name], "--output", tmp_path / "tutor.wav")
    assert_one_error_line(result, str(inputs[name]), ERRORS[name])
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("name", "learner"),
    [("stereo_8k_int16", [{12}]), ("nan_samples", [{12}]), ("clipped_noise", [])],
)
def test_talk_takes_odd_but_readable_input(inputs, run_cli, tmp_path, name, learner):
    tutor_wav = tmp_path / "tutor.wav"
    result = run_cli("talk", "--fast", "--json", "--input", inputs[name], "--output", tutor_wav)
    assert_clean_success(result)
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    assert [heard_numbers(t["learner"]) for t in turns] == learner
    audio, _ = soundfile.read(tutor_wav, dtype="float32")
    assert len(audio) > 0 and np.isfinite(audio).all()  # at least the greeting was spoken


def test_talk_reports_an_unwritable_output_in_one_line(inputs, run_cli, tmp_path):
    output = tmp_path / "no-such-dir" / "tutor.wav"
    result = run_cli("talk", "--fast", "--input", inputs["silence"], "--output", output)
    assert_one_error_line(result, f"cannot write {output}")
    assert not output.parent.exists()


# --- models and endpoints ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory) -> dict[str, Path]:
    from voice_tutor.speech.bundled import whisper_base_dir

    root = tmp_path_factory.mktemp("models")
    real = whisper_base_dir()
    models = {}
    for name, payload in [
        ("garbage", b"this is not a CTranslate2 model\n" * 100),
        ("truncated", (real / "model.bin").open("rb").read(1_000_000)),
    ]:
        folder = root / name
        folder.mkdir()
        (folder / "model.bin").write_bytes(payload)
        for extra in ("config.json", "tokenizer.json", "vocabulary.json"):
            shutil.copyfile(real / extra, folder / extra)
        models[name] = folder
    models["empty_dir"] = root / "empty"
    models["empty_dir"].mkdir()
    return models


def test_missing_stt_model_is_one_clear_error(inputs, run_cli, tmp_path):
    missing = tmp_path / "nonexistent"
    result = run_cli("transcribe", "--stt-model", missing, inputs["silence"])
    assert_one_error_line(result, str(missing))


def test_missing_stt_model_error_says_it_is_missing(inputs, run_cli, tmp_path):
    missing = tmp_path / "nonexistent"
    result = run_cli("transcribe", "--stt-model", missing, inputs["silence"])
    line = assert_one_error_line(result, str(missing))
    assert "Repo id" not in line
    assert any(words in line.lower() for words in ("no such", "not found", "does not exist"))


@pytest.mark.parametrize("which", ["garbage", "truncated", "empty_dir"])
def test_corrupt_stt_model_is_one_clear_error(inputs, run_cli, broken_models, which):
    result = run_cli("transcribe", "--stt-model", broken_models[which], inputs["silence"])
    assert_one_error_line(result, "cannot load Whisper model", str(broken_models[which]))


def test_corrupt_stt_model_stops_talk_before_it_starts(inputs, run_cli, broken_models, tmp_path):
    result = run_cli("talk", "--fast", "--input", inputs["silence"], "--output", tmp_path / "tutor.wav",
                     "--stt-model", broken_models["garbage"])
    assert_one_error_line(result, "cannot load Whisper model")
    assert result.stdout == ""


def test_missing_and_corrupt_voice_are_one_clear_error(run_cli, tmp_path):
    result = run_cli("say", "Twelve.", "-o", tmp_path / "a.wav", "--voice", tmp_path / "nope.onnx")
    assert_one_error_line(result, "piper voice not found")
    voice = tmp_path / "broken.onnx"
    voice.write_bytes(b"\x00garbage" * 500)
    from voice_tutor.speech.bundled import piper_joe_voice

    shutil.copyfile(f"{piper_joe_voice()}.json", f"{voice}.json")
    result = run_cli("say", "Twelve.", "-o", tmp_path / "a.wav", "--voice", voice)
    assert_one_error_line(result, "cannot load piper voice", str(voice))
    assert not (tmp_path / "a.wav").exists()


def test_unreachable_llm_endpoint_is_one_clear_error(inputs, run_cli, tmp_path):
    result = run_cli("talk", "--fast", "--input", inputs["silence"], "--output", tmp_path / "tutor.wav",
                     "--llm-url", "http://127.0.0.1:9/v1")
    line = assert_one_error_line(result, "LLM endpoint http://127.0.0.1:9/v1", "unreachable")
    assert line.endswith("connection refused")
    assert not (tmp_path / "tutor.wav").exists()
