"""First audio of uncached replies: a short first clause, and TTS workers shared by sessions.

    .venv/bin/python benchmarks/uncached_replies.py [--sessions 1,4,8] [--json]   (prints JSON)

Replies are the lessons' own explanations and hints (long first sentences, never
in the phrase cache: the cache is off).  For each reply the first piece the
session would synthesize is timed with piper:

* ``whole first sentence``: the piece before this change (a reply arriving whole
  was said sentence by sentence);
* ``opening clause``: the piece now (``SentenceChunker`` splits a long first
  sentence at its first clause boundary).

Then N sessions ask for a reply's first piece at the same moment (a class
answering together) on the TTS pool: one worker (before) against ``[tts] workers``
(default: one per core up to 4); reported is each session's time from the
request to its first audio, p50/p95.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voice_tutor.config import TextToSpeechConfig  # noqa: E402
from voice_tutor.speech.sentences import SentenceChunker  # noqa: E402
from voice_tutor.speech.tts import SpeechSynthesizer  # noqa: E402


def lesson_replies(limit: int) -> list[str]:
    """Explanations and hints from the bundled lessons whose first sentence is long (12+ words)."""
    found: list[str] = []
    for path in sorted((ROOT / "assets" / "lessons").glob("*.toml")):
        lesson = tomllib.loads(path.read_text(encoding="utf-8"))

        def walk(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in {"explanation", "hints", "feedback", "text"}:
                        yield from (value if isinstance(value, list) else [value])
                    else:
                        yield from walk(value)
            elif isinstance(node, list):
                for item in node:
                    yield from walk(item)

        for text in walk(lesson):
            if isinstance(text, str) and text.isascii() and len(first_sentence(text).split()) >= 12:
                found.append(text)
    return found[:limit]


def first_sentence(text: str) -> str:
    chunker = SentenceChunker(first_sentence_max_words=10_000)  # never split: the old first piece
    pieces = chunker.push(text) + chunker.flush()
    return pieces[0] if pieces else ""


def first_piece(text: str) -> str:
    chunker = SentenceChunker()
    pieces = chunker.push(text) + chunker.flush()
    return pieces[0] if pieces else ""


def timed(synthesizer: SpeechSynthesizer, text: str) -> float:
    started = time.perf_counter()
    synthesizer.synthesize(text)
    return (time.perf_counter() - started) * 1000


def together(synthesizer: SpeechSynthesizer, texts: list[str], workers: int) -> list[float]:
    """Each text asked for at the same moment on a pool of ``workers``: ms from the request to its audio."""
    with ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()

        def one(text: str) -> float:
            synthesizer.synthesize(text)
            return (time.perf_counter() - started) * 1000

        return list(pool.map(one, texts))


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=24)
    parser.add_argument("--sessions", default="1,4,8")
    parser.add_argument("--json", action="store_true", help="indent the JSON it prints")
    args = parser.parse_args()
    synthesizer = SpeechSynthesizer(TextToSpeechConfig(), phrase_cache_mb=0)
    synthesizer.warm_up()
    replies = lesson_replies(args.replies)
    whole = [timed(synthesizer, first_sentence(text)) for text in replies]
    clause = [timed(synthesizer, first_piece(text)) for text in replies]
    results = {
        "command": "benchmarks/uncached_replies.py " + " ".join(sys.argv[1:]),
        "cores": os.cpu_count(), "tts_workers": synthesizer.workers, "replies": len(replies),
        "first_piece_words_p50": {
            "whole_first_sentence": float(np.median([len(first_sentence(t).split()) for t in replies])),
            "opening_clause": float(np.median([len(first_piece(t).split()) for t in replies])),
        },
        "first_audio_ms": {"whole_first_sentence": {"p50": pct(whole, 50), "p95": pct(whole, 95)},
                           "opening_clause": {"p50": pct(clause, 50), "p95": pct(clause, 95)}},
        "concurrent": {},
    }
    for count in (int(n) for n in args.sessions.split(",")):
        texts = [first_piece(replies[i % len(replies)]) for i in range(count)]
        rounds = max(1, 24 // count)
        one_worker = [ms for _ in range(rounds) for ms in together(synthesizer, texts, 1)]
        pooled = [ms for _ in range(rounds) for ms in together(synthesizer, texts, synthesizer.workers)]
        results["concurrent"][str(count)] = {
            "one_worker": {"p50": pct(one_worker, 50), "p95": pct(one_worker, 95)},
            f"{synthesizer.workers}_workers": {"p50": pct(pooled, 50), "p95": pct(pooled, 95)},
        }
    print(json.dumps(results, indent=2 if args.json else None))


if __name__ == "__main__":
    main()
