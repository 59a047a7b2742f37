"""Does biasing Whisper with a lesson's vocabulary help it hear the lesson's terms?

For every lesson in assets/lessons, each vocabulary term is put into two
sentences a learner might say: a short answer ("I think it's chlorophyll.")
and a sentence from the lesson's own answers, hints or explanations that uses
it.  Each sentence is spoken by piper at three speaking rates and by espeak-ng
with two voices, resampled to 16 kHz, and transcribed by the bundled
recognizer twice: plainly, and with ``hotwords=" ".join(lesson.vocabulary)``.

Reported per lesson, without and with hotwords: term recall (of the
vocabulary terms in the spoken sentences, the fraction found in the
transcript), the word error rate of the sentences (jiwer), and how many
transcripts ran away (a decoding loop: more than half as many words again as
were spoken, and at least three more).  Both sides are compared after the same
normalization: case, punctuation and accents ignored and number words as
digits, so "Café" matches "cafe" and "make ten" matches "make 10".

    .venv/bin/python benchmarks/hotwords.py [--lesson ID ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import unicodedata

import jiwer
import numpy as np
import soundfile
import soxr
from text_to_num import alpha2digit

from voice_tutor.config import ASSETS_DIR, SpeechToTextConfig, TextToSpeechConfig
from voice_tutor.learning.lessons import Lesson, load_lesson
from voice_tutor.speech.stt import SAMPLE_RATE, SpeechRecognizer
from voice_tutor.speech.tts import SpeechSynthesizer

PIPER_RATES = (0.85, 1.0, 1.2)
"""piper length_scale: faster, the voice's own, slower."""
ESPEAK_VOICES = {"en": ("en-us", "en-gb"), "es": ("es", "es-419")}
SHORT_ANSWER = {"en": "I think it's {term}.", "es": "Sí, {term}."}
"""A learner's short answer around a bare term, in the lesson's answer language."""


def normalize(text: str, language: str) -> str:
    """Lowercase, digits for number words, no accents, no punctuation: what counts as hearing a word right."""
    text = alpha2digit(text.lower().replace("-", " "), language, threshold=0)
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def contains(text: str, term: str, language: str) -> bool:
    return f" {normalize(term, language)} " in f" {normalize(text, language)} "


def ran_away(reference: str, transcript: str) -> bool:
    spoken, heard = len(reference.split()), len(transcript.split())
    return heard > spoken + max(3, spoken // 2)


def _lesson_sentences(lesson: Lesson) -> list[str]:
    """What a learner might say in this lesson: its text answers, and (in English) its teaching sentences."""
    said = [a for q in lesson.questions if q.kind == "text" for a in q.answers]
    said += [a for q in lesson.questions if q.kind == "text" for m in q.misconceptions for a in m.answers]
    if lesson.answer_language == "en":
        texts = [text for q in lesson.questions for text in (*q.hints, q.explanation)]
        texts += [q.prompt for q in lesson.questions] + [s.description for s in lesson.skills]
        said += [sentence for text in texts for sentence in re.split(r"(?<=[.!?])\s+", text)]
    return [s for s in said if 3 <= len(s.split()) <= 25]


def sentences_for(lesson: Lesson) -> list[str]:
    """Per vocabulary term: a short answer, and the first lesson sentence using it (if any)."""
    pool = _lesson_sentences(lesson)
    chosen: list[str] = []
    for term in lesson.vocabulary:
        chosen.append(SHORT_ANSWER[lesson.answer_language].format(term=term))
        found = next((s for s in pool if contains(s, term, lesson.answer_language) and s not in chosen), None)
        if found:
            chosen.append(found)
    return chosen


class Voices:
    """The synthesizers of the benchmark, each sentence spoken by all of them at 16 kHz."""

    def __init__(self):
        self._piper = {rate: SpeechSynthesizer(TextToSpeechConfig(length_scale=rate)) for rate in PIPER_RATES}

    def names(self, language: str) -> list[str]:
        return [f"piper x{rate}" for rate in PIPER_RATES] + [f"espeak {v}" for v in ESPEAK_VOICES[language]]

    def speak(self, text: str, name: str) -> np.ndarray:
        engine, setting = name.split(" ")
        if engine == "piper":
            voice = self._piper[float(setting[1:])]
            audio, rate = voice.synthesize(text), voice.sample_rate
        else:
            with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
                subprocess.run(["espeak-ng", "-v", setting, "-w", wav.name, text], check=True, capture_output=True)
                audio, rate = soundfile.read(wav.name, dtype="float32")
        return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)


def measure(lesson: Lesson, recognizer: SpeechRecognizer, voices: Voices) -> dict:
    hotwords = " ".join(lesson.vocabulary)
    language = lesson.answer_language
    records = []
    for sentence in sentences_for(lesson):
        terms = [t for t in lesson.vocabulary if contains(sentence, t, language)]
        for voice in voices.names(language):
            audio = voices.speak(sentence, voice)
            plain = recognizer.transcribe_turn(audio).text
            biased = recognizer.transcribe_turn(audio, hotwords=hotwords).text
            records.append({
                "sentence": sentence, "voice": voice, "terms": terms, "plain": plain, "hotwords": biased,
                "missed_plain": [t for t in terms if not contains(plain, t, language)],
                "missed_hotwords": [t for t in terms if not contains(biased, t, language)],
            })
    occurrences = sum(len(r["terms"]) for r in records)
    references = [normalize(r["sentence"], language) for r in records]

    def recall(key: str, term: str | None = None) -> float:
        """Of the spoken occurrences of ``term`` (or of every term), the fraction heard."""
        spoken = [(r, t) for r in records for t in r["terms"] if term in (None, t)]
        return sum(t not in r[f"missed_{key}"] for r, t in spoken) / len(spoken)

    def heard(key: str) -> list[str]:
        return [normalize(r[key], language) or "<nothing>" for r in records]

    def runaway(key: str) -> int:
        return sum(ran_away(reference, transcript) for reference, transcript in zip(references, heard(key)))

    return {
        "lesson": lesson.id,
        "language": lesson.answer_language,
        "utterances": len(records),
        "term_occurrences": occurrences,
        "term_recall": {key: recall(key) for key in ("plain", "hotwords")},
        "wer": {key: jiwer.wer(references, heard(key)) for key in ("plain", "hotwords")},
        "runaway": {key: runaway(key) for key in ("plain", "hotwords")},
        "per_term_recall": {term: {key: recall(key, term) for key in ("plain", "hotwords")} for term in lesson.vocabulary},
        "records": records,
    }


def format_table(results: list[dict], recognizer: str) -> str:
    lines = [
        f"speech recognition: {recognizer}; hotwords = the lesson's vocabulary",
        "",
        f"{'lesson':<16} {'lang':<4} {'utts':>5} {'terms':>6}   {'recall plain':>12} {'+hotwords':>9}"
        f"   {'WER plain':>9} {'+hotwords':>9}   {'runaway plain':>13} {'+hotwords':>9}",
    ]
    for r in results:
        lines.append(
            f"{r['lesson']:<16} {r['language']:<4} {r['utterances']:>5} {r['term_occurrences']:>6}"
            f"   {r['term_recall']['plain']:>12.1%} {r['term_recall']['hotwords']:>9.1%}"
            f"   {r['wer']['plain']:>9.1%} {r['wer']['hotwords']:>9.1%}"
            f"   {r['runaway']['plain']:>13} {r['runaway']['hotwords']:>9}"
        )
    lines += ["", "terms whose recall changed most (plain -> hotwords):"]
    changes = sorted(
        ((r["lesson"], term, v["plain"], v["hotwords"]) for r in results for term, v in r["per_term_recall"].items()),
        key=lambda row: -abs(row[3] - row[2]),
    )
    lines += [f"  {lesson}: {term!r} {plain:.0%} -> {biased:.0%}" for lesson, term, plain, biased in changes[:12]
              if plain != biased]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lesson", action="append", help="lesson id (default: every lesson)")
    parser.add_argument("--json", action="store_true", help="print the results, with every transcript, as JSON")
    args = parser.parse_args(argv)
    paths = sorted((ASSETS_DIR / "lessons").glob("*.toml"))
    lessons = [load_lesson(p) for p in paths if not args.lesson or p.stem in args.lesson]
    voices = Voices()
    recognizers: dict[str, SpeechRecognizer] = {}
    results = []
    for lesson in lessons:
        language = lesson.answer_language
        if language not in recognizers:
            recognizers[language] = SpeechRecognizer(SpeechToTextConfig(language=language))
        started = time.perf_counter()
        results.append(measure(lesson, recognizers[language], voices))
        print(f"{lesson.id}: {results[-1]['utterances']} utterances in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
    description = next(iter(recognizers.values())).description if recognizers else "none"
    if args.json:
        print(json.dumps({"recognizer": description, "lessons": results}, indent=2, ensure_ascii=False))
    else:
        print(format_table(results, description))
    return 0


if __name__ == "__main__":
    sys.exit(main())
