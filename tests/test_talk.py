"""Whole spoken sessions: `voice-tutor talk` as a real subprocess, and `Session` in process.

The learner is a generated recording (piper and espeak-ng voices, real
silences between turns); the tutor is the real lesson tutor (or the real
OpenAI-compatible test server) speaking through the real piper voice; every
transcript comes from the real Whisper model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audio_fixtures import SAMPLE_RATE, rms, to_16k, wer_text
from voice_tutor.audio.sinks import WavFileSink
from voice_tutor.audio.sources import FileSource
from voice_tutor.config import Config
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.dialogue.lesson_tutor import LessonTutor
from voice_tutor.events import (
    BargeIn,
    FinalTranscript,
    SessionNotice,
    SpeechStarted,
    TurnCompleted,
    TutorReplyDone,
    TutorSpeechEnded,
    TutorSpeechStarted,
)
from voice_tutor.learning.lessons import find_lesson, load_lesson
from voice_tutor.session import Session

pytestmark = pytest.mark.slow

GREETING_START = "Hi friend! Let's practise adding and taking away."
PRAISE = ("That's right!", "Yes, well done!", "Correct, nice work!", "Exactly right!")


def arithmetic() -> LessonTutor:
    config = Config()
    return LessonTutor(load_lesson(find_lesson("arithmetic", config.dialogue.lessons_dir)))


def parse_turns(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def envelope(path: Path, window_s: float = 0.05) -> tuple[np.ndarray, float]:
    """RMS per window of a WAV file, and the window length."""
    audio, rate = soundfile.read(path, dtype="float32")
    step = int(rate * window_s)
    count = len(audio) // step
    frames = audio[: count * step].reshape(count, step)
    return np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)), window_s


def loudest_between(path: Path, start_s: float, end_s: float) -> float:
    levels, window = envelope(path)
    return float(levels[int(start_s / window) : int(end_s / window)].max(initial=0.0))


async def run_session(models, learner: Path, tutor_wav: Path, *, realtime: bool, tutor=None,
                      timeout: float = 90) -> tuple[Session, list[TurnCompleted], list]:
    """One in-process session over a recording; returns the session, its turns and every bus event."""
    source = FileSource(learner, realtime=realtime)
    sink = WavFileSink(tutor_wav, models.synthesizer.sample_rate, realtime=realtime)
    session = Session(models, tutor or arithmetic(), source, sink, Config(), session_id="test")
    queue = session.bus.subscribe(maxsize=100_000)
    turns = await asyncio.wait_for(session.run(), timeout)
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    assert session.bus.dropped == 0
    return session, turns, events


# --- a multi-turn lesson through `voice-tutor talk --fast` -------------------------------------------

# (silence before, who speaks, what they say, speaking rate) and what the tutor must answer.
LESSON_SCRIPT = [
    (1.0, "piper", "Eleven.", 1.0),
    (1.5, "piper", "Twelve.", 1.1),
    (1.5, "espeak", "Can you give me a hint please?", None),
    (1.5, "piper", "Nine.", 0.9),
    (1.5, "piper", "Please say that again.", 0.95),
    (1.5, "piper", "Sixteen.", 1.0),
    (1.5, "piper", "Fifteen.", 1.2),
    (1.5, "piper", "Fourteen.", 1.0),
    (1.5, "piper", "I think it's the sum.", 1.05),
    (1.5, "piper", "Goodbye.", 1.2),
]


@pytest.fixture(scope="module")
def lesson_talk(tmp_path_factory, say, espeak_say, run_cli):
    """`voice-tutor talk --fast --json` over a ten-turn recording of a learner working through the lesson."""
    from audio_fixtures import build_recording, write_wav

    workdir = tmp_path_factory.mktemp("lesson")
    parts = [
        (gap, say(text, scale) if voice == "piper" else espeak_say(text))
        for gap, voice, text, scale in LESSON_SCRIPT
    ]
    audio, _ = build_recording(parts)
    learner, tutor_wav = write_wav(workdir / "learner.wav", audio), workdir / "tutor.wav"
    result = run_cli("talk", "--input", learner, "--output", tutor_wav, "--fast", "--json", timeout=180)
    return result, tutor_wav


def test_lesson_replies_follow_the_lesson(lesson_talk):
    result, _ = lesson_talk
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    turns = parse_turns(result.stdout)
    said = [t["learner"] for t in turns]
    assert len(turns) == len(LESSON_SCRIPT), said
    replies = [t["tutor"] for t in turns]

    # A wrong answer gets the first hint of the question, not the answer.
    assert wer_text(said[0]) == "11"
    assert replies[0] == "Not quite. Here's a hint: Seven needs three more to make ten. Try again."
    # The right answer is praised and the next question is asked.
    assert wer_text(said[1]) == "12"
    assert replies[1].startswith(PRAISE)
    assert replies[1].endswith("Next question. What is fifteen minus six?")
    # Asking for help gets the next question's first hint.
    assert "hint" in said[2].lower()
    assert replies[2] == "Here's a hint: Take away five first to get to ten. Try again."
    assert replies[3].startswith(PRAISE) and replies[3].endswith("Next question. What is eight plus nine?")
    # "Say that again" repeats the question, word for word.
    assert replies[4] == "What is eight plus nine?"
    # Two wrong answers use up the two hints; the third gets the explanation and the next question.
    assert replies[5].startswith("Not quite. Here's a hint: Nine is one less than ten.")
    assert replies[6].startswith("Not quite. Here's a hint: Eight plus ten is eighteen")
    assert replies[7].startswith("Not quite. Eight plus nine is seventeen")
    assert replies[7].endswith("What do we call the answer when we add numbers together?")
    # A spoken text answer is matched; the last answer ends the lesson.
    assert "sum" in said[8].lower()
    assert replies[8].endswith("That's the end of today's practice. Great effort, see you next time!")
    assert replies[9].startswith("We have finished this lesson.")


def test_lesson_turns_report_what_was_heard_and_latencies(lesson_talk):
    result, _ = lesson_talk
    turns = parse_turns(result.stdout)
    assert turns
    for number, turn in enumerate(turns, start=1):
        assert set(turn) >= {"turn", "learner", "tutor", "heard", "cut", "latency_ms"}
        assert turn["turn"] == number
        assert turn["learner"] and turn["tutor"]
        assert turn["cut"] is False and turn["heard"] == turn["tutor"]  # nobody interrupted
        latency = turn["latency_ms"]
        assert set(latency) >= {"final_transcript", "first_audio"}
        # Measured from the learner's last voiced sample, in order, and well under the 10 s a stall would take.
        assert 0 < latency["final_transcript"] <= latency.get("first_text", latency["first_audio"])
        assert latency["final_transcript"] <= latency["first_audio"] < 10_000


def test_tutor_wav_holds_the_lesson_spoken(lesson_talk, recognizer):
    result, tutor_wav = lesson_talk
    assert result.returncode == 0
    audio, rate = soundfile.read(tutor_wav, dtype="float32")
    assert rate == 22050
    replies = " ".join(t["tutor"] for t in parse_turns(result.stdout))
    # Written back to back (--fast): about as long as the greeting plus every reply takes to say.
    assert 0.03 <= len(audio) / rate / len(GREETING_START + replies) <= 0.12
    assert rms(audio) > 0.03
    # The first 25 s (greeting and the first replies) are heard as the lesson's words.
    heard = wer_text(recognizer.transcribe(to_16k(audio[: 25 * rate], rate)).text)
    for words in ("adding and taking away", "7 plus 5", "hint", "make 10", "15 minus 6"):
        assert words in heard, heard


# --- barge-in ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def barge_in_recording(tmp_path_factory, say):
    """'Twelve.' 3 s into the greeting, then 'Can you say that again please?' ~1.5 s into the reply to it."""
    from audio_fixtures import build_recording, write_wav

    twelve = say("Twelve.")
    again = say("Can you say that again please?")
    # The reply to 'Twelve.' starts ~0.4 s after it ends (end-of-turn silence plus answering).
    again_at = 3.0 + len(twelve) / SAMPLE_RATE + 0.4 + 1.5
    audio, placed = build_recording([(3.0, twelve), (again_at - 3.0 - len(twelve) / SAMPLE_RATE, again)])
    path = write_wav(tmp_path_factory.mktemp("barge") / "learner.wav", audio)
    return path, placed


def test_barge_in_cuts_the_reply_in_real_time(barge_in_recording, run_cli, tmp_path):
    learner, placed = barge_in_recording
    tutor_wav = tmp_path / "tutor.wav"
    result = run_cli("talk", "--input", learner, "--output", tutor_wav, "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    turns = parse_turns(result.stdout)
    assert [wer_text(t["learner"]) for t in turns] == ["12", "can you say that again please"]

    answer, repeat = turns
    assert answer["tutor"] == answer["tutor"].strip() and answer["tutor"].endswith("What is fifteen minus six?")
    assert answer["cut"] is True
    assert answer["heard"] and answer["heard"] != answer["tutor"] and answer["tutor"].startswith(answer["heard"])
    assert repeat["tutor"] == "What is fifteen minus six?"
    assert repeat["cut"] is False and repeat["heard"] == repeat["tutor"]

    # tutor.wav is the session's timeline: the tutor fell silent soon after the learner started speaking,
    # and stayed silent until the learner's turn was over.
    twelve, again = placed
    assert loudest_between(tutor_wav, 0.5, twelve.start) > 0.05  # the greeting was playing
    assert loudest_between(tutor_wav, twelve.start + 0.6, twelve.end + 0.25) < 0.005
    assert loudest_between(tutor_wav, twelve.end + 0.4, again.start) > 0.05  # the reply was playing
    assert loudest_between(tutor_wav, again.start + 0.6, again.end + 0.25) < 0.005


async def test_barge_in_events_in_process(speech_models, barge_in_recording, tmp_path):
    learner, placed = barge_in_recording
    tutor_wav = tmp_path / "tutor.wav"
    _, turns, events = await run_session(speech_models, learner, tutor_wav, realtime=True)

    barge_ins = [e for e in events if isinstance(e, BargeIn)]
    assert [b.turn_id for b in barge_ins] == [0, 1]  # the greeting, then the reply to 'Twelve.'
    ended = {e.turn_id: e for e in events if isinstance(e, TutorSpeechEnded)}
    assert sorted(ended) == [0, 1, 2]
    for turn_id in (0, 1):
        cut = ended[turn_id]
        assert cut.cut is True
        assert cut.heard and cut.heard != cut.text and cut.text.startswith(cut.heard)
    assert ended[0].text.startswith("Hi friend!") and ended[0].heard.startswith("Hi friend!")
    assert ended[2].cut is False

    # Each cut followed the speech that caused it within ~one audio block: measured from the events.
    for barge_in in barge_ins:
        index = events.index(barge_in)
        started = events[index - 1]
        assert isinstance(started, SpeechStarted)
        cut = ended[barge_in.turn_id]
        assert events.index(cut) > index
        delay = cut.t - started.t
        print(f"turn {barge_in.turn_id}: speech started -> tutor speech ended in {delay * 1000:.0f} ms")
        assert 0 <= delay < 0.1

    # The first cut came when the learner spoke, ~3 s into the greeting (not at some stray sound).
    [greeting_started] = [e for e in events if isinstance(e, TutorSpeechStarted) and e.turn_id == 0]
    first_speech = events[events.index(barge_ins[0]) - 1]
    assert placed[0].start - 0.5 < first_speech.t - greeting_started.t < placed[0].start + 0.6

    assert [t.turn_id for t in turns] == [1, 2]
    assert turns[0].cut is True and turns[1].cut is False
    started_turns = {e.turn_id for e in events if isinstance(e, TutorSpeechStarted)}
    assert started_turns == {0, 1, 2}


# --- turn-taking -------------------------------------------------------------------------------------


async def test_a_pause_mid_sentence_does_not_end_the_turn(speech_models, say, recording, tmp_path):
    """'Seven plus... (0.7 s) five is twelve': one turn, answered once."""
    learner, _ = recording([(1.0, say("Seven plus...")), (0.7, say("five is twelve."))])
    _, turns, events = await run_session(speech_models, learner, tmp_path / "tutor.wav", realtime=False)
    finals = [e.text for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1, finals
    assert wer_text(finals[0]) == "7 plus 5 is 12"
    [turn] = turns
    assert turn.tutor.endswith("Next question. What is fifteen minus six?")


async def test_the_same_pause_after_a_finished_answer_ends_the_turn(speech_models, say, recording, tmp_path):
    """The control: after words that sound finished, 0.7 s of silence is the end of the turn."""
    learner, _ = recording([(1.0, say("Eleven.")), (0.7, say("Twelve."))])
    _, turns, _ = await run_session(speech_models, learner, tmp_path / "tutor.wav", realtime=False)
    assert [wer_text(t.learner) for t in turns] == ["11", "12"]
    assert "hint" in turns[0].tutor and "fifteen minus six" in turns[1].tutor


@pytest.mark.xfail(strict=True, reason=(
    "speech/stt.py transcribe_turn hears the paused 'Fifteen minus' as '15 minus. 15 minus. 15 minus. "
    "15 minus. 15', so sounds_unfinished() sees a finished sentence and the learner is cut off mid-sentence"
))
async def test_a_slow_pause_after_minus_does_not_end_the_turn(speech_models, say, recording, tmp_path):
    learner, _ = recording([(1.0, say("Fifteen minus", 1.2)), (0.8, say("six is nine.", 1.2))])
    _, _, events = await run_session(speech_models, learner, tmp_path / "tutor.wav", realtime=False)
    finals = [e.text for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1, finals
    assert wer_text(finals[0]) == "15 minus 6 is 9"


# --- a broken dialogue backend -----------------------------------------------------------------------


class BrokenTutor:
    """A dialogue backend that fails halfway through every reply (a real Tutor, not a mock of one)."""

    name = "broken"

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        yield "Hello! "
        yield "Let us count"
        raise RuntimeError("the backend fell over")

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        yield "Hm"
        raise RuntimeError("the backend fell over")


async def test_a_broken_backend_apologises_instead_of_falling_silent(speech_models, recording, tmp_path):
    learner, _ = recording([(0.5, np.zeros(SAMPLE_RATE, np.float32))])
    _, _, events = await run_session(speech_models, learner, tmp_path / "tutor.wav", realtime=False,
                                     tutor=BrokenTutor())
    notices = [e for e in events if isinstance(e, SessionNotice)]
    assert notices and notices[0].level == "error" and "fell over" in notices[0].message
    [done] = [e for e in events if isinstance(e, TutorReplyDone)]
    assert done.text.endswith("Could you say that again?")
    [ended] = [e for e in events if isinstance(e, TutorSpeechEnded)]
    assert ended.cut is False
    assert "Could you say that again?" in ended.text


@pytest.mark.xfail(strict=True, reason=(
    "responder.py _reply: the apology's complete first sentence is returned by chunker.push(apology) "
    "and discarded, so only 'Could you say that again?' is spoken"
))
async def test_the_whole_apology_is_spoken(speech_models, recording, tmp_path):
    learner, _ = recording([(0.5, np.zeros(SAMPLE_RATE, np.float32))])
    _, _, events = await run_session(speech_models, learner, tmp_path / "tutor.wav", realtime=False,
                                     tutor=BrokenTutor())
    [ended] = [e for e in events if isinstance(e, TutorSpeechEnded)]
    assert "Sorry, I lost my train of thought." in ended.text


# --- the LLM tutor, end to end against the real OpenAI-compatible test server -------------------------


@pytest.fixture(scope="module")
def llm_talk(llm_server, tmp_path_factory, say, run_cli):
    from audio_fixtures import build_recording, write_wav

    workdir = tmp_path_factory.mktemp("llm-talk")
    audio, _ = build_recording([(1.0, say("Eleven.")), (1.5, say("Twelve.", 1.1))])
    learner = write_wav(workdir / "learner.wav", audio)
    result = run_cli(
        "talk", "--fast", "--json", "--input", learner, "--output", workdir / "tutor.wav",
        "--llm-url", llm_server.url, "--llm-model", "tutor-test", timeout=120,
    )
    return result, llm_server


def test_llm_tutor_speaks_the_servers_streamed_reply(llm_talk):
    result, server = llm_talk
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    turns = parse_turns(result.stdout)
    assert [wer_text(t["learner"]) for t in turns] == ["11", "12"]
    for turn in turns:
        # The server answers "Tutor heard: {user}. What is seven plus five?", streamed word by word.
        assert turn["tutor"] == f"Tutor heard: {turn['learner']}. What is seven plus five?"
        assert turn["cut"] is False and turn["heard"] == turn["tutor"]
        assert {"final_transcript", "first_text", "first_audio"} <= set(turn["latency_ms"])


def test_llm_requests_carry_the_lesson_grounding_and_history(llm_talk):
    result, server = llm_talk
    assert result.returncode == 0, result.stderr
    bodies = server.completion_bodies()
    assert len(bodies) == 3  # the opening and two learner turns
    for body in bodies:
        assert body["model"] == "tutor-test" and body["stream"] is True
        system = body["messages"][0]
        assert system["role"] == "system"
        assert "Adding and subtracting within twenty" in system["content"]
        assert "What is seven plus five? (accepted: 12" in system["content"]
        assert "Seven needs three more to make ten." in system["content"]
    opening, first, second = bodies
    assert "friend" in opening["messages"][-1]["content"]
    assert wer_text(first["messages"][-1]["content"]) == "11"
    # The second turn sees the first exchange as the learner heard it.
    assert [m["role"] for m in second["messages"][-3:]] == ["user", "assistant", "user"]
    assert second["messages"][-2]["content"].startswith("Tutor heard:")
    assert wer_text(second["messages"][-1]["content"]) == "12"


@pytest.mark.xfail(strict=True, reason=(
    "session.py _end_turn records an Exchange only for turns with timing, and the greeting (turn 0) has "
    "none: the LLM is never shown the opening it said (nor that it was cut)"
))
def test_llm_history_includes_the_opening_the_learner_heard(llm_talk):
    _, server = llm_talk
    _opening, first, _second = server.completion_bodies()
    assistant = [m["content"] for m in first["messages"] if m["role"] == "assistant"]
    assert any(text.startswith("Tutor heard:") for text in assistant), first["messages"]

