"""Small runs of the benchmarks: `voice-tutor bench` and the scripts in benchmarks/.

Real models, real sessions, real generated speech, but only a few short
utterances and two sessions: these check that every report is complete and
well-formed, never how fast this machine is (no timing is asserted).  Also
the tutor's phrase cache (``speech/tts.py``), which the load benchmark measures.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from voice_tutor import bench
from voice_tutor.audio.turns import FRAME_MS
from voice_tutor.config import Config, with_overrides
from voice_tutor.speech.tts import PhraseCache

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SHORT = [("piper", 1.0, "Twelve."), ("piper", 1.2, "I think it is nine."), ("espeak", "en-gb", "Is it eleven?")]
QUICK_GAP_S = 1.8
"""Silence between utterances in these runs: longer than the 1.2 s an unfinished-sounding turn waits."""


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def well_formed(distribution: dict, n: int | None = None) -> None:
    assert set(distribution) == {"p50", "p95", "max", "n"}
    if n is not None:
        assert distribution["n"] == n
    if distribution["n"]:
        assert all(math.isfinite(distribution[k]) and distribution[k] >= 0 for k in ("p50", "p95", "max"))
        assert distribution["p50"] <= distribution["p95"] <= distribution["max"]


@pytest.fixture(scope="module")
def utterances():
    specs = SHORT if shutil.which("espeak-ng") else SHORT[:2]
    return bench.generate_utterances(specs)


# --- pure pieces --------------------------------------------------------------------------------------


def test_word_errors_normalize_numbers_and_punctuation():
    assert bench.word_errors("It is twelve.", "it is 12") == 0
    assert bench.word_errors("Seven plus five", "seven plus nine") == 1
    assert bench.word_count("It is twelve.") == 3


def test_distribution_of_nothing_is_empty_but_well_formed():
    empty = bench.distribution([])
    assert empty["n"] == 0 and math.isnan(empty["p50"]) and math.isnan(empty["max"])
    well_formed(bench.distribution([3.0, 1.0, 2.0]), n=3)


def test_recording_lays_clips_between_silences():
    clips = [np.ones(100, np.float32), np.ones(50, np.float32)]
    audio = bench.recording_audio(clips, gap_s=0.01)
    assert len(audio) == 3 * 160 + 150 and audio.dtype == np.float32
    assert audio[:160].sum() == 0 and audio[160:260].sum() == 100


def test_cuda_asked_for_without_a_gpu_is_one_clear_error(capsys):
    if bench.cuda_devices() > 0:
        pytest.skip("a CUDA GPU is present")
    config = with_overrides(Config(), stt={"device": "cuda"})
    assert bench.main(config, as_json=False, sessions=2) == 2
    error = capsys.readouterr().err
    assert "no CUDA GPU" in error and "--device cpu" in error


def test_phrase_cache_keeps_recent_phrases_within_its_bytes():
    cache = PhraseCache(max_bytes=3 * 400, max_chars=20)
    for index in range(4):
        cache.put((f"phrase {index}", 1.0), np.full(100, index, np.float32))  # 400 bytes each
    assert len(cache) == 3 and cache.bytes == 1200
    assert cache.get(("phrase 0", 1.0)) is None  # the oldest went first
    hit = cache.get(("phrase 1", 1.0))
    assert hit is not None and hit[0] == 1
    hit[:] = 9  # a caller's copy, not the cached audio
    assert cache.get(("phrase 1", 1.0))[0] == 1
    assert (cache.hits, cache.misses) == (2, 1)
    assert not cache.cacheable("a phrase far longer than twenty characters")
    assert not PhraseCache(max_bytes=0).cacheable("Hi.")
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0


# --- the real models -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_repeated_tutor_phrases_come_from_the_cache(synthesizer):
    synthesizer.clear_cache()
    first = synthesizer.synthesize("Next question.")
    hits = synthesizer.phrase_cache.hits
    again = synthesizer.synthesize("Next question.")
    assert synthesizer.phrase_cache.hits == hits + 1
    assert np.array_equal(first, again) and again.dtype == np.float32 and len(again) > 0
    slower = synthesizer.synthesize("Next question.", speed=0.8)
    assert len(slower) > len(first)  # another speed is another phrase
    assert synthesizer.synthesize("...").size == 0


@pytest.mark.slow
def test_the_generator_makes_16_khz_speech_for_every_spec(utterances):
    assert [text for text, _ in utterances] == [text for _, _, text in SHORT][: len(utterances)]
    for _text, audio in utterances:
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 0.3 < len(audio) / bench.SAMPLE_RATE < 5
        assert np.abs(audio).max() > 0.05


@pytest.mark.slow
def test_two_sessions_at_once_report_every_stage(speech_models, utterances, tmp_path):
    report = bench.run_concurrent(speech_models, Config(), utterances, 2, tmp_path, gap_s=QUICK_GAP_S)
    runs = report.pop("runs")
    assert len(runs) == 2 and report["sessions"] == 2
    assert report["utterances_per_session"] == len(utterances)
    assert report["turns"] == sum(len(run.turns) for run in runs) >= 2
    for stage in ("final_transcript", "first_text", "first_audio", "endpoint_to_final"):
        well_formed(report["latency_ms"][stage])
    assert report["latency_ms"]["final_transcript"]["n"] == report["turns"]
    partials = [partial for run in runs for partial in run.partials]
    assert report["latency_ms"]["partial_behind_speech"]["n"] == len(partials)
    assert all(0 < partial.heard_until < partial.t for partial in partials)
    # A turn ends when the silence is long enough; the final transcript cannot come before that moment
    # (a frame's rounding aside).
    assert report["latency_ms"]["endpoint_to_final"]["p50"] > -FRAME_MS
    well_formed(report["frame_lag_ms"])
    assert report["frame_lag_ms"]["n"] == sum(len(run.frame_lags_s) for run in runs) > 0
    well_formed(report["event_loop_lag_ms"])
    well_formed(report["stt_in_session"]["ms"])
    assert report["stt_in_session"]["finals"] >= report["turns"]
    assert 0 <= report["sessions_kept_up"] <= 2 and report["all_kept_up"] == (report["sessions_kept_up"] == 2)
    assert 0 < report["memory_mb"]["before"] <= report["memory_mb"]["peak"]
    assert report["stagger_s"] > 0
    for run in runs:
        assert all(final.text for final in run.finals)
        assert run.wall_s > 0 and run.audio_s > 0
    table = "\n".join(bench.format_concurrent(report))
    assert "2 sessions at once" in table and "first tutor audio" in table and "kept up" in table


@pytest.mark.slow
def test_bench_with_sessions_reports_the_single_and_concurrent_runs(speech_models, utterances, monkeypatch):
    monkeypatch.setattr(bench, "GAP_S", QUICK_GAP_S)
    results = bench.run_bench(Config(), sessions=2, models=speech_models, utterances=utterances[:2])
    for key in ("machine", "stt", "tts", "utterances", "turns", "model_load_s", "peak_memory_mb",
                "end_of_speech_to_final_transcript_ms", "end_of_speech_to_first_audio_ms",
                "endpoint_to_final_transcript_ms", "partial_behind_speech_ms",
                "stt_real_time_factor", "stt_word_error_rate", "tts_first_sentence_ms", "concurrent"):
        assert key in results, key
    assert results["utterances"] == 2 and results["turns"] >= 1
    concurrent = results["concurrent"]
    assert concurrent["sessions"] == 2 and "runs" not in concurrent
    memory = concurrent["memory_mb"]
    assert memory["peak_n_sessions"] >= memory["models_loaded_idle"] > 0
    assert memory["added_per_session"] is not None
    assert results["stt_real_time_factor"]["turn_window_p50"] > 0
    table = bench.format_table(results)
    assert "end of speech → first tutor audio" in table and "peak memory of the session" in table
    assert "endpoint → final transcript" in table and "partial transcript behind speech" in table
    assert "2 sessions at once" in table and "memory added per further session" in table
    import json

    json.dumps(results)  # the --json output


@pytest.mark.slow
def test_side_by_side_runs_both_paths_on_the_same_audio(speech_models, utterances):
    side_by_side = load_script("side_by_side")
    assert len(side_by_side.SPECS) >= 30
    assert {setting for engine, setting, _ in side_by_side.SPECS if engine == "espeak"} >= {"en-us", "en-gb"}

    recording = bench.recording_audio([audio for _, audio in utterances], QUICK_GAP_S)
    segments = side_by_side.segment(recording)
    assert len(segments) == len(utterances)
    assert all(wait == side_by_side.BASELINE_SILENCE_MS for _, wait in segments)

    result = side_by_side.run_side_by_side(
        Config(), beams=(1,), utterances=utterances, models=speech_models, gap_s=QUICK_GAP_S
    )
    assert result["utterances"] == len(utterances)
    pipeline, baseline = result["pipeline"], result["baseline"]["beam_1"]
    well_formed(pipeline["first_audio_ms"])
    assert pipeline["first_audio_ms"]["n"] >= 1
    well_formed(baseline["first_audio_ms"], n=len(utterances))
    for part in ("endpoint_wait_ms", "sound_wait_ms", "stt_ms", "tts_ms", "lead_ms"):
        well_formed(baseline[part], n=len(utterances))
    assert baseline["endpoint_wait_ms"]["p50"] == side_by_side.BASELINE_SILENCE_MS
    assert baseline["fragments"] == 0 and pipeline["fragments"] >= 0
    well_formed(pipeline["first_audio_events_ms"])  # the session's own figure beside the one from the sound
    ratio = result["ratio"]["beam_1"]
    assert ratio["p50"] > 0 and ratio["p95"] > 0
    wer = result["word_error_rate"]
    for key in ("pipeline_in_session", "baseline_in_pipeline_beam_1", "fast_path_per_clip",
                "standard_transcribe_per_clip_beam_5"):
        assert 0 <= wer[key] <= 2, key
    assert sum(wer["clips_fast_worse_better_same"]) == len(utterances)
    table = side_by_side.format_table(result)
    assert "this pipeline" in table and "baseline, beam 1" in table and "/ this pipeline: p50" in table


def test_recognition_paths_scores_both_paths_on_the_same_clips(speech_models, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as when run as a script: it reads side_by_side's sentences
    paths = load_script("recognition_paths")
    assert len(paths.specs(4)) == 4 * len(paths.specs(1))
    assert len({(engine, setting) for engine, setting, _ in paths.specs(4)}) == 8  # every voice speaks

    recognizer = speech_models.recognizer
    before = recognizer.config
    result = paths.run(Config(), [1, 2], [3.0], voices_per_text=2, texts=2, recognizer=recognizer)
    assert recognizer.config == before  # the shared recognizer is left as it was
    clips = 4 if shutil.which("espeak-ng") else 2
    assert result["clips"] == clips and result["words"] > 0
    assert list(result["paths"]) == [
        "standard transcribe(), beam 5", "fast path, beam 1, padding 3.0 s", "fast path, beam 2, padding 3.0 s",
    ]
    for scored in result["paths"].values():
        assert 0 <= scored["wer"] <= 2 and len(scored["clip_errors"]) == clips
        assert scored["word_errors"] == sum(scored["clip_errors"]) and scored["ms_per_clip_p50"] > 0
    fast = result["paths"]["fast path, beam 1, padding 3.0 s"]
    assert fast["clips_better_than_standard"] + fast["clips_worse_than_standard"] <= clips
    assert "AVX" in result["machine"] or "neither" in result["machine"] or "unknown" in result["machine"]
    assert "fast path, beam 2" in paths.format_table(result)


@pytest.mark.slow
def test_sessions_load_steps_up_and_reports_each_count(speech_models, utterances):
    sessions_load = load_script("sessions_load")
    result = sessions_load.run_load(
        Config(), [1, 2], utterances[:2], models=speech_models, gap_s=QUICK_GAP_S, stop=False,
    )
    assert [row["sessions"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        for stage in ("final_transcript", "first_audio"):
            well_formed(row["latency_ms"][stage])
        well_formed(row["frame_lag_ms"])
        assert 0 <= row["sessions_kept_up"] <= row["sessions"]
        assert row["peak_rss_mb"] > 0 and isinstance(row["ok"], bool)
    assert result["rows"][0]["added_per_session_mb"] is None
    assert result["rows"][1]["added_per_session_mb"] is not None
    assert result["sustained_sessions"] in (0, 1, 2)
    assert result["stt_workers"] == speech_models.recognizer.workers >= 1
    table = sessions_load.format_table(result)
    assert "sustained in real time" in table and len(table.splitlines()) >= 10
