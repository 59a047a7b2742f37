"""Echo cancellation: how much of the tutor's own voice is removed, and does the rest cause barge-ins?

    .venv/bin/python benchmarks/echo.py [--replies 6] [--json]

A session's worth of tutor replies (piper, uncached, played in 40 ms blocks,
1.5 s apart, through one canceller as in a session) go through a simulated
room (tests/audio_fixtures.py: a delay, the direct sound, then reverberation
decaying over RT60; the echo 0-15 dB louder than a learner speaking at
-30 dBFS) into the microphone path, on a simulated clock (reference blocks
handed over 60 ms before they play, as the sinks do).  For each room the
script reports:

* ERLE (echo return loss enhancement): echo energy in / out, over the session
  and after its first reply (AEC3 converges during the first);
* false barge-ins: how many times the session's own turn detector (Silero VAD,
  ``[turns]`` thresholds) would have heard a learner start speaking in the
  cleaned echo alone, without and with cancellation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from audio_fixtures import rms, room_impulse_response  # noqa: E402
from voice_tutor.audio.echo import EchoCanceller  # noqa: E402
from voice_tutor.audio.turns import Transition, TurnDetector  # noqa: E402
from voice_tutor.audio.vad import FRAME_SAMPLES, SAMPLE_RATE, StreamingVad  # noqa: E402
from voice_tutor.config import TurnTakingConfig  # noqa: E402
from voice_tutor.speech.tts import SpeechSynthesizer  # noqa: E402

REPLIES = [
    "Hi friend! Let's practise adding and taking away. Answer out loud whenever you're ready. What is seven plus five?",
    "Yes, well done! Next question. What is fifteen minus six?",
    "Not quite. Think of fifteen as ten and five, then take away six. Try again.",
    "Photosynthesis is how plants make their own food, using light, water and carbon dioxide.",
    "A pendulum swings back and forth. Make the string longer and see what happens to the period.",
    "Great thinking! Three quarters is the same as six eighths. What is half of a half?",
]
ROOMS = [(echo_db, delay_ms, rt60) for echo_db in (0, 5, 10, 15) for delay_ms in (20, 60, 150) for rt60 in (0.2, 0.4)]
LEARNER_DBFS = -30.0


def starts(audio: np.ndarray) -> int:
    """How many utterances the session's turn detector would start in ``audio`` (each a barge-in)."""
    vad, detector, count = StreamingVad(), TurnDetector(TurnTakingConfig()), 0
    for start in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        transition = detector.feed(vad(audio[start : start + FRAME_SAMPLES]))
        if transition is Transition.STARTED:
            count += 1
        if detector.in_speech and detector.silence_ms >= 320:
            detector.end_turn()
    return count


def erle_db(heard: np.ndarray, cleaned: np.ndarray) -> float:
    return round(20 * np.log10(rms(heard) / max(rms(cleaned), 1e-9)), 1)


def cancel(replies: list[np.ndarray], rate: int, microphone: np.ndarray, starts_s: list[float]) -> np.ndarray:
    """One canceller for the whole session, on a simulated clock: reply ``i`` starts playing at
    ``starts_s[i]``, in 40 ms blocks handed over 60 ms ahead of playing; nothing is handed over
    between replies (the session's sinks are silent then)."""
    canceller = EchoCanceller(rate)
    block = int(rate * 0.04)
    blocks = [(at + offset / rate, reply[offset : offset + block])
              for reply, at in zip(replies, starts_s, strict=True) for offset in range(0, len(reply), block)]
    handed, cleaned = 0, []
    for start in range(0, len(microphone) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        captured_at = (start + FRAME_SAMPLES) / SAMPLE_RATE
        while handed < len(blocks) and blocks[handed][0] <= captured_at + 0.06:
            canceller.played(blocks[handed][1], at=blocks[handed][0])
            handed += 1
        cleaned.append(canceller.clean(microphone[start : start + FRAME_SAMPLES], captured_at))
    return np.concatenate(cleaned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=len(REPLIES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    synthesizer = SpeechSynthesizer(phrase_cache_mb=0)
    rate = synthesizer.sample_rate
    replies = [synthesizer.synthesize(text) for text in REPLIES[: args.replies]]
    rows = []
    gap_s = 1.5
    starts_s, at = [], 0.5
    for reply in replies:
        starts_s.append(at)
        at += len(reply) / rate + gap_s
    played = np.zeros(int(at * SAMPLE_RATE), dtype=np.float32)
    for reply, start in zip(replies, starts_s, strict=True):
        audio = soxr.resample(reply, rate, SAMPLE_RATE).astype(np.float32)
        played[int(start * SAMPLE_RATE) : int(start * SAMPLE_RATE) + len(audio)] = audio
    first_reply_end = int((starts_s[0] + len(replies[0]) / rate + gap_s) * SAMPLE_RATE)
    for index, (echo_db, delay_ms, rt60) in enumerate(ROOMS):
        response = room_impulse_response(delay_ms, rt60_s=rt60, seed=index)
        echo = np.convolve(played, response)[: len(played)]
        echo = (echo * 10 ** ((LEARNER_DBFS + echo_db) / 20) / rms(echo[echo != 0])).astype(np.float32)
        noise = np.random.default_rng(index).standard_normal(len(echo)).astype(np.float32) * 10 ** (-65 / 20)
        microphone = np.clip(echo + noise, -1, 1)
        out = cancel(replies, rate, microphone, starts_s)
        heard = microphone[: len(out)]
        later = slice(first_reply_end, len(out))
        rows.append({"echo_over_learner_db": echo_db, "delay_ms": delay_ms, "rt60_s": rt60,
                     "erle_db": erle_db(heard, out), "erle_after_first_reply_db": erle_db(heard[later], out[later]),
                     "false_barge_ins_without_aec": starts(heard), "false_barge_ins_with_aec": starts(out),
                     "of_them_after_the_first_reply": starts(out[later])})
    summary = {
        "command": "benchmarks/echo.py " + " ".join(sys.argv[1:]),
        "replies_per_room": len(replies), "rooms": len(rows),
        "false_barge_ins_without_aec": sum(r["false_barge_ins_without_aec"] for r in rows),
        "false_barge_ins_with_aec": sum(r["false_barge_ins_with_aec"] for r in rows),
        "false_barge_ins_with_aec_after_the_first_reply": sum(r["of_them_after_the_first_reply"] for r in rows),
        "erle_db_median": round(float(np.median([r["erle_db"] for r in rows])), 1),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print("echo/learner dB  delay ms  RT60 s  ERLE dB  ERLE after 1st reply  false barge-ins: without / with AEC"
          " (after the 1st reply)")
    for r in rows:
        print(f"{r['echo_over_learner_db']:>15}  {r['delay_ms']:>8}  {r['rt60_s']:>6}  {r['erle_db']:>7}"
              f"  {r['erle_after_first_reply_db']:>20}  {r['false_barge_ins_without_aec']:>7} / "
              f"{r['false_barge_ins_with_aec']} ({r['of_them_after_the_first_reply']})")
    print(f"total, {len(rows)} sessions of {len(replies)} replies: false barge-ins "
          f"{summary['false_barge_ins_without_aec']} without AEC, {summary['false_barge_ins_with_aec']} with "
          f"({summary['false_barge_ins_with_aec_after_the_first_reply']} after the first reply); "
          f"median ERLE {summary['erle_db_median']} dB")


if __name__ == "__main__":
    main()
