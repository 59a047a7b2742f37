"""How well each recognition path hears the same clips: the session's fast path against ``transcribe()``.

The live session transcribes a turn with :meth:`SpeechRecognizer.transcribe_turn`
(a trimmed encoder window, ``[stt] padding_s`` of silence, ``[stt] beam_size``
beams).  This script runs it, for each beam size and padding asked for, and
faster-whisper's standard ``WhisperModel.transcribe`` (30 s window, beam 5,
temperature fallback) on the very same clips: the learner sentences of
``benchmarks/side_by_side.py``, each spoken by ``--voices`` of its eight voices
(piper at four speaking rates, four espeak-ng accents).  It prints the word
error rate of each path overall and per engine, how many clips each fast
configuration heard better or worse than the standard path (a paired count,
which says more than a small difference of rates), and the median time per
clip.  Int8 kernels differ between CPUs (AVX2 against AVX-512), so the same
clip can be heard differently on another machine: the CPU's vector extensions
are printed with the results.

    .venv/bin/python benchmarks/recognition_paths.py [--beams 1,2] [--padding 3.0] [--voices 4] [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time

import numpy as np
from side_by_side import _TEXTS, _VOICES  # the same sentences and voices (this folder is on sys.path)

from voice_tutor import bench
from voice_tutor.config import Config, with_overrides
from voice_tutor.speech.stt import SpeechRecognizer


def specs(voices_per_text: int, texts: int | None = None) -> list[tuple[str, float | str, str]]:
    """Each sentence by ``voices_per_text`` different voices, rotating so every voice speaks as often."""
    chosen = []
    for index, text in enumerate(_TEXTS[:texts]):
        for k in range(voices_per_text):
            engine, setting = _VOICES[(index + k * (len(_VOICES) // voices_per_text)) % len(_VOICES)]
            chosen.append((engine, setting, text))
    return chosen


def vector_extensions() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "neither AVX2 nor AVX-512"


def _score(references: list[str], heard: list[str], engines: list[str], seconds: list[float]) -> dict:
    errors = [bench.word_errors(r, h) for r, h in zip(references, heard, strict=True)]
    words = [bench.word_count(r) for r in references]
    per_engine = {}
    for engine in sorted(set(engines)):
        mine = [i for i, e in enumerate(engines) if e == engine]
        per_engine[engine] = round(sum(errors[i] for i in mine) / max(1, sum(words[i] for i in mine)), 4)
    return {
        "wer": round(sum(errors) / max(1, sum(words)), 4),
        "word_errors": sum(errors),
        "per_engine": per_engine,
        "ms_per_clip_p50": round(float(np.median(seconds)) * 1000, 1),
        "clip_errors": errors,
    }


def run(config: Config, beams: list[int], paddings: list[float], voices_per_text: int, texts: int | None = None,
        recognizer: SpeechRecognizer | None = None, progress=lambda message: None) -> dict:
    chosen = specs(voices_per_text, texts)
    if not shutil.which("espeak-ng"):  # make_utterances skips them too
        chosen = [spec for spec in chosen if spec[0] != "espeak"]
    progress(f"making {len(chosen)} clips…")
    utterances = bench.generate_utterances(chosen)
    engines = [engine for engine, _, _ in chosen]
    references, clips = [text for text, _ in utterances], [audio for _, audio in utterances]
    if recognizer is None:
        recognizer = SpeechRecognizer(config.stt)
        recognizer.warm_up()
    language = config.stt.language
    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {vector_extensions()}, {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "stt": recognizer.description,
        "clips": len(clips),
        "words": sum(bench.word_count(r) for r in references),
        "paths": {},
    }
    progress("standard transcribe() (beam 5)…")
    heard, seconds = [], []
    for clip in clips:
        started = time.perf_counter()
        segments, _info = recognizer.whisper.transcribe(clip, language=language)
        heard.append(" ".join(segment.text.strip() for segment in segments).strip())
        seconds.append(time.perf_counter() - started)
    standard = result["paths"]["standard transcribe(), beam 5"] = _score(references, heard, engines, seconds)
    base = recognizer.config
    try:
        for beam in beams:
            for padding in paddings:
                progress(f"fast path, beam {beam}, padding {padding} s…")
                recognizer.config = dataclasses.replace(base, beam_size=beam, padding_s=padding)
                heard, seconds = [], []
                for clip in clips:
                    started = time.perf_counter()
                    heard.append(recognizer.transcribe_turn(clip).text)
                    seconds.append(time.perf_counter() - started)
                scored = _score(references, heard, engines, seconds)
                pairs = list(zip(scored["clip_errors"], standard["clip_errors"], strict=True))
                scored["clips_better_than_standard"] = sum(mine < theirs for mine, theirs in pairs)
                scored["clips_worse_than_standard"] = sum(mine > theirs for mine, theirs in pairs)
                result["paths"][f"fast path, beam {beam}, padding {padding} s"] = scored
    finally:
        recognizer.config = base
    return result


def format_table(result: dict) -> str:
    lines = [
        f"machine: {result['machine']} (load average at start {result['load_average_at_start']})",
        f"stt: {result['stt']}",
        f"{result['clips']} clips, {result['words']} words",
        "",
        f"{'path':<36} {'WER':>6} {'errors':>7} {'piper':>6} {'espeak':>7} {'ms/clip':>8}  vs standard (clips)",
    ]
    for name, scored in result["paths"].items():
        paired = (f"  {scored['clips_better_than_standard']} better, {scored['clips_worse_than_standard']} worse"
                  if "clips_better_than_standard" in scored else "")
        engines = scored["per_engine"]
        lines.append(
            f"{name:<36} {scored['wer']:>6.3f} {scored['word_errors']:>7} {engines.get('piper', float('nan')):>6.3f} "
            f"{engines.get('espeak', float('nan')):>7.3f} {scored['ms_per_clip_p50']:>8.0f}{paired}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beams", default="1,2", help="fast-path beam sizes to try ([stt] beam_size)")
    parser.add_argument("--padding", default="3.0", help="fast-path paddings in seconds to try ([stt] padding_s)")
    parser.add_argument("--voices", type=int, default=4, choices=[1, 2, 4, 8], help="voices per sentence")
    parser.add_argument("--limit", type=int, help="only the first N sentences (a quick look)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = with_overrides(Config(), stt={"device": args.device})
    try:
        bench.check_device(config)
    except bench.NoGpu as error:
        print(f"recognition_paths: {error}", file=sys.stderr)
        return 2
    result = run(
        config,
        [int(b) for b in args.beams.split(",") if b.strip()],
        [float(s) for s in args.padding.split(",") if s.strip()],
        args.voices,
        args.limit,
        progress=lambda message: print(message, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
