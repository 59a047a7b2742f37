"""How long a learner waits for the tutor after switching lessons by voice, against an ordinary answer.

Each run is one spoken session of the arithmetic lesson, played in real time
(``FileSource`` paced like a microphone) into a real ``Session`` with the real
models, the offline tutor and a fresh SQLite learner store: an answer, "Can we
do fractions?", an answer, "Let's do photosynthesis instead.", an answer.  A
switch loads the new lesson's learner memory from the store, builds its tutors,
tells recognition its vocabulary and says its opening.  Reported over every
run: the latency from the end of the learner's speech to the tutor's first text
and first audio sample, for switch turns and for answer turns (p50 and max).

    .venv/bin/python benchmarks/lesson_switch.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
from pathlib import Path

from voice_tutor.audio.sinks import WavFileSink
from voice_tutor.audio.sources import FileSource
from voice_tutor.bench import generate_utterances, write_recording
from voice_tutor.config import Config
from voice_tutor.session import SpeechModels
from voice_tutor.store import Store
from voice_tutor.tutoring import Tutoring

SCRIPT = ["Twelve.", "Can we do fractions?", "Four.", "Let's do photosynthesis instead.", "Carbon dioxide."]
SWITCH_LEAD = "Okay, let's do"


async def one_run(models: SpeechModels, recording: Path, workdir: Path) -> list[tuple[str, dict[str, float]]]:
    """(kind, latency_ms) per learner turn: kind is "switch" or "answer"."""
    store = Store.open(workdir / "tutor.db")
    try:
        tutoring = await Tutoring.open(Config(), "bench", store)
        source = FileSource(recording, realtime=True)
        sink = WavFileSink(workdir / "tutor.wav", models.synthesizer.sample_rate, realtime=False)
        turns = await tutoring.run(tutoring.session(models, source, sink))
    finally:
        store.close()
    return [("switch" if turn.tutor.startswith(SWITCH_LEAD) else "answer", turn.latency_ms) for turn in turns]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": round(statistics.median(values), 1), "max": round(max(values), 1)} if values else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clips = [audio for _, audio in generate_utterances([("piper", 1.0, text) for text in SCRIPT])]
    models = SpeechModels.load(Config())
    results: list[tuple[str, dict[str, float]]] = []
    try:
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as folder:
                workdir = Path(folder)
                recording = write_recording(workdir / "learner.wav", clips, gap_s=2.5)
                turns = asyncio.run(one_run(models, recording, workdir))
                if [kind for kind, _ in turns].count("switch") != 2:
                    print(f"run {run}: the session did not switch twice: {[kind for kind, _ in turns]}")
                results += turns
    finally:
        models.close()
    report = {
        kind: {stage: summary([lat[stage] for k, lat in results if k == kind and stage in lat])
               for stage in ("first_text", "first_audio")}
        for kind in ("switch", "answer")
    }
    report["runs"], report["load_average_1m"] = args.runs, round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(report))
    else:
        for kind in ("switch", "answer"):
            for stage in ("first_text", "first_audio"):
                line = report[kind][stage]
                print(f"{kind:7} {stage:12} p50 {line.get('p50')} ms  max {line.get('max')} ms  (n={line.get('n')})")
        print(f"runs {args.runs}, 1-minute load average {report['load_average_1m']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
