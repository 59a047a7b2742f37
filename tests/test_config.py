"""Configuration: defaults, TOML overrides, refusals, and the LLM settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice_tutor.config import Config, ConfigError, load_config, with_overrides


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "voice-tutor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_embedded_offline_setup():
    config = load_config(None, environ={})
    assert config == Config()
    assert config.stt.model == "bundled:whisper-base" and config.tts.voice == "bundled:joe"
    assert config.llm.base_url is None  # the offline tutor
    assert config.dialogue.lesson == "arithmetic" and config.dialogue.lessons_dir.is_dir()


def test_toml_overrides_fields_by_section(tmp_path):
    path = write(tmp_path, '''
[stt]
model = "/models/whisper-small"
cpu_threads = 2
language = "fr"

[tts]
length_scale = 1.2

[turns]
end_of_turn_ms = 400
max_utterance_s = 20

[llm]
base_url = "http://127.0.0.1:8000/v1"
temperature = 0

[dialogue]
lesson = "fractions"
lessons_dir = "/srv/lessons"
''')
    config = load_config(path, environ={})
    assert config.stt.model == "/models/whisper-small" and config.stt.cpu_threads == 2
    assert config.stt.language == "fr"
    assert config.stt.device == "auto"  # untouched fields keep their defaults
    assert config.tts.length_scale == 1.2
    assert config.turns.end_of_turn_ms == 400 and config.turns.pause_ms == 160
    assert config.turns.max_utterance_s == 20.0 and isinstance(config.turns.max_utterance_s, float)
    assert config.llm.base_url == "http://127.0.0.1:8000/v1"
    assert config.llm.temperature == 0.0 and isinstance(config.llm.temperature, float)
    assert config.dialogue.lesson == "fractions" and config.dialogue.lessons_dir == Path("/srv/lessons")


def test_an_empty_file_is_the_defaults(tmp_path):
    assert load_config(write(tmp_path, ""), environ={}) == Config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[speech]\nmodel = 'x'\n", "unknown sections: speech"),
        ("[stt]\nmodle = 'x'\n", "[stt].modle: unknown key"),
        ("[turns]\nend_of_turn = 300\npause = 1\n", "[turns].end_of_turn: unknown key; [turns].pause: unknown key"),
        ("stt = 5\n", "[stt] must be a table"),
        ("[turns]\npause_ms = 'fast'\n", "[turns].pause_ms: must be an integer, not str"),
        ("[stt]\nlanguage = 5\n", "[stt].language: must be text, not int"),
        ("[llm]\ntemperature = 'warm'\n", "[llm].temperature: must be a number, not str"),
        ("[turns]\npause_ms = 1.5\n", "[turns].pause_ms: must be an integer, not float"),
        ("[turns]\npause_ms = true\n", "[turns].pause_ms: must be an integer, not bool"),
        ("[tts]\nlength_scale = 'fast'\n", "[tts].length_scale: must be a number, not str"),
        ("[dialogue]\nlessons_dir = 5\n", "[dialogue].lessons_dir: must be a path, not int"),
        ("[stt\nmodel = 'x'\n", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize("text", ["[turns]\npause_ms = true\n", "[llm]\ntemperature = true\n"])
def test_booleans_are_not_numbers(tmp_path, text):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text), environ={})


@pytest.mark.parametrize(
    "text",
    ["[tts]\nlength_scale = 'fast'\n", "[llm]\nbase_url = 5\n", "[llm]\napi_key = ['a', 'b']\n",
     "[dialogue]\nlearner_name = 7\n"],
)
def test_optional_fields_are_type_checked_too(tmp_path, text):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text), environ={})


def test_a_path_field_that_is_not_text_is_refused(tmp_path):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "[dialogue]\nlessons_dir = 5\n"), environ={})


# --- the environment ---------------------------------------------------------------------------------


def test_environment_sets_the_llm(tmp_path):
    config = load_config(None, environ={
        "VOICE_TUTOR_LLM_BASE_URL": "http://127.0.0.1:9999/v1",
        "VOICE_TUTOR_LLM_MODEL": "tutor-test",
        "VOICE_TUTOR_LLM_API_KEY": "sk-voice",
    })
    assert config.llm.base_url == "http://127.0.0.1:9999/v1"
    assert config.llm.model == "tutor-test" and config.llm.api_key == "sk-voice"


def test_openai_api_key_is_the_fallback_key():
    assert load_config(None, environ={"OPENAI_API_KEY": "sk-openai"}).llm.api_key == "sk-openai"
    both = {"OPENAI_API_KEY": "sk-openai", "VOICE_TUTOR_LLM_API_KEY": "sk-voice"}
    assert load_config(None, environ=both).llm.api_key == "sk-voice"


def test_environment_beats_the_file_and_empty_values_do_not(tmp_path):
    path = write(tmp_path, '[llm]\nbase_url = "http://file/v1"\nmodel = "file-model"\napi_key = "sk-file"\n')
    config = load_config(path, environ={"VOICE_TUTOR_LLM_MODEL": "env-model", "VOICE_TUTOR_LLM_BASE_URL": ""})
    assert config.llm.model == "env-model"
    assert config.llm.base_url == "http://file/v1"  # an empty variable does not unset the file's value
    assert config.llm.api_key == "sk-file"


def test_unrelated_environment_is_ignored():
    config = load_config(None, environ={"VOICE_TUTOR_STT_MODEL": "large", "HOME": "/tmp"})
    assert config == Config()


def test_load_config_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("VOICE_TUTOR_LLM_MODEL", "from-process-env")
    assert load_config().llm.model == "from-process-env"


# --- command-line overrides ---------------------------------------------------------------------------


def test_with_overrides_replaces_given_values_and_skips_none():
    base = Config()
    config = with_overrides(
        base,
        stt={"model": "tiny", "device": None},
        llm={"base_url": None, "model": None},
        dialogue={"lesson": "fractions"},
    )
    assert config.stt.model == "tiny" and config.stt.device == base.stt.device
    assert config.llm == base.llm  # nothing given, nothing changed
    assert config.dialogue.lesson == "fractions"
    assert base.stt.model == "bundled:whisper-base"  # frozen: the original is untouched
    with pytest.raises(ConfigError, match=r"\[stt\]\.modle: unknown key"):
        with_overrides(base, stt={"modle": "tiny"})
