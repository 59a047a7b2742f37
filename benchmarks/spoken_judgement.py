"""Spoken answers through the real recognizer: how often is a right answer judged right?

The hand-written corpus's answers (``tests/data/judgement/handwritten.json``:
every ``right`` item, and with ``--all`` the wrong, hedged and non-answer
items too) are spoken by several voices: the bundled piper voice at two
speaking rates, espeak-ng voice variants, and flite's voices (Debian package
``flite``).  Each clip is transcribed by the bundled faster-whisper model the
way a session does (``transcribe_turn`` in the lesson's answer language)
twice: biased with the lesson's vocabulary only (what sessions did before),
and with the pending question's answers added (``intent.answer_words``, what a
session does now).  The transcript, with the recognizer's confidence, is
judged by the tutor's own ``intent.understand`` and ``answers.check_answer``.

Reported per voice and mode: of the right spoken answers, the share judged
right, confirmed ("Did you say …?"), judged wrong, or not taken for an answer;
of the wrong spoken answers, the share judged right (what biasing must not
cause); non-answers graded.

    PYTHONPATH=. python benchmarks/spoken_judgement.py [--voices piper,espeak-us,...] [--limit N] [--all]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judgement import NOT_ANSWERS, judge, lessons, load_items  # noqa: E402

from voice_tutor.config import SpeechToTextConfig, TextToSpeechConfig  # noqa: E402
from voice_tutor.dialogue.intent import answer_words, spoken_number  # noqa: E402
from voice_tutor.speech.stt import SAMPLE_RATE, SpeechRecognizer, hotwords_for  # noqa: E402
from voice_tutor.speech.tts import SpeechSynthesizer  # noqa: E402

VOICES = {
    "piper-joe": ("piper", 1.0),
    "piper-joe-slow": ("piper", 1.3),
    "espeak-us": ("espeak", "en-us"),
    "espeak-rp-f": ("espeak", "en-gb-x-rp+f3"),
    "espeak-scot": ("espeak", "en-gb-scotland+m3"),
    "flite-slt": ("flite", "slt"),
    "flite-rms": ("flite", "rms"),
    "flite-awb": ("flite", "awb"),
}
"""Learner voices; espeak-ng speaks the Spanish lesson with its Spanish voice (``es``), the others with an English accent."""
MODES = ("vocabulary", "vocabulary+answers")


def as_said(text: str) -> str:
    """Written numbers as a learner says them ("3/8" -> "three eighths"): no one says "three slash eight"."""
    return re.sub(r"(?<![\w.])\d+(?:\.\d+|/\d+)?(?![\w])", lambda m: spoken_number(m.group(0)), text)


class Speaker:
    def __init__(self):
        self._piper: dict[float, SpeechSynthesizer] = {}

    def speak(self, voice: str, text: str, language: str) -> np.ndarray:
        engine, setting = VOICES[voice]
        if engine == "piper":
            if setting not in self._piper:
                self._piper[setting] = SpeechSynthesizer(TextToSpeechConfig(length_scale=setting))
            synthesizer = self._piper[setting]
            audio, rate = synthesizer.synthesize(text), synthesizer.sample_rate
        else:
            with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
                if engine == "espeak":
                    variant = setting.split("+")[1] if "+" in setting else None
                    name = setting if language == "en" else "es" + (f"+{variant}" if variant else "")
                    command = ["espeak-ng", "-v", name, "-w", wav.name, text]
                else:
                    command = ["flite", "-voice", setting, "-t", text, "-o", wav.name]
                subprocess.run(command, check=True, capture_output=True, timeout=30)
                audio, rate = soundfile.read(wav.name, dtype="float32", always_2d=True)
                audio = audio.mean(axis=1)
        audio = np.concatenate([np.zeros(SAMPLE_RATE // 5, np.float32),
                                soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32),
                                np.zeros(SAMPLE_RATE // 5, np.float32)])
        return audio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voices", default=",".join(VOICES), help="comma-separated, of: " + ", ".join(VOICES))
    parser.add_argument("--limit", type=int, default=0, help="at most this many utterances per label (0: all)")
    parser.add_argument("--all", action="store_true", help="also wrong answers, hedged lists and non-answers")
    parser.add_argument("--show", action="store_true",
                        help="print every right answer not judged right, non-answer graded, or wrong/hedged one judged right")
    args = parser.parse_args(argv)
    labels = {"right", "wrong", "hedged", "multi", *NOT_ANSWERS} if args.all else {"right"}
    items = [item for item in load_items(["handwritten.json"]) if item.label in labels]
    if args.limit:
        kept, seen = [], Counter()
        for item in items:
            if seen[item.label] < args.limit:
                kept.append(item)
                seen[item.label] += 1
        items = kept
    by_id = lessons()
    recognizers: dict[str, SpeechRecognizer] = {}
    speaker = Speaker()
    voices = args.voices.split(",")
    outcomes: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    misses: list[str] = []
    started = time.perf_counter()
    for item in items:
        lesson = by_id[item.lesson]
        language = lesson.answer_language
        question = next(q for q in lesson.questions if q.id == item.question)
        if language not in recognizers:
            recognizers[language] = SpeechRecognizer(SpeechToTextConfig(language=language))
        recognizer = recognizers[language]
        vocabulary = " ".join(lesson.vocabulary)
        hotwords = {"vocabulary": vocabulary or None,
                    "vocabulary+answers": hotwords_for(vocabulary, *answer_words(question))}
        for voice in voices:
            audio = speaker.speak(voice, as_said(item.text), language)
            for mode in MODES:
                heard = recognizer.transcribe_turn(audio, hotwords=hotwords[mode], language=language)
                outcome = judge(heard.text, question, language, confidence=heard.confidence)
                outcomes[(item.label, voice, mode)][outcome] += 1
                misjudged = ((item.label == "right" and outcome != "correct")
                             or (item.label in NOT_ANSWERS and outcome in ("correct", "wrong"))
                             or (item.label in ("hedged", "multi", "wrong") and outcome == "correct"))
                if args.show and misjudged:
                    misses.append(f"  {item.label:<9} {voice:<15} {mode:<19} {item.text!r} -> {heard.text!r} "
                                  f"({outcome}, confidence {heard.confidence or 0:.2f})")
    elapsed = time.perf_counter() - started
    print(f"{len(items)} utterances x {len(voices)} voices x {len(MODES)} modes in {elapsed:.0f} s; "
          f"recognizer: {next(iter(recognizers.values())).description}")
    _print_table("right spoken answers", "right", voices, outcomes, ("correct", "confirm", "wrong"))
    if args.all:
        _print_table("wrong spoken answers", "wrong", voices, outcomes, ("correct", "confirm", "wrong"))
        for mode in MODES:
            graded = sum(outcomes[(label, voice, mode)][verdict] for label in NOT_ANSWERS for voice in voices
                         for verdict in ("correct", "wrong"))
            total = sum(sum(outcomes[(label, voice, mode)].values()) for label in NOT_ANSWERS for voice in voices)
            chosen = sum(outcomes[(label, voice, mode)]["correct"] for label in ("hedged", "multi") for voice in voices)
            print(f"{mode}: non-answers graded {graded} of {total}; hedged/multi judged correct {chosen}")
    if misses:
        print("\nmisjudged:")
        print("\n".join(misses))
    return 0


def _print_table(title: str, label: str, voices: list[str], outcomes, columns: tuple[str, ...]) -> None:
    print(f"\n{title}: share judged " + " / ".join(columns) + " / other, per voice and biasing")
    print(f"{'voice':<16}" + "".join(f"{mode:>34}" for mode in MODES))
    totals = {mode: Counter() for mode in MODES}
    for voice in voices:
        row = f"{voice:<16}"
        for mode in MODES:
            counts = outcomes[(label, voice, mode)]
            totals[mode].update(counts)
            row += f"{_shares(counts, columns):>34}"
        print(row)
    print(f"{'all voices':<16}" + "".join(f"{_shares(totals[mode], columns):>34}" for mode in MODES))


def _shares(counts: Counter, columns: tuple[str, ...]) -> str:
    total = sum(counts.values())
    if not total:
        return "-"
    parts = [counts[c] / total for c in columns]
    other = 1 - sum(parts)
    return " / ".join(f"{100 * p:.1f}" for p in [*parts, other]) + f" (n={total})"


if __name__ == "__main__":
    sys.exit(main())
