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

from audio_fixtures import SAMPLE_RATE, heard_numbers, rms, to_16k, wer_text
from voice_tutor.audio.sinks import WavFileSink
from voice_tutor.audio.sources import FileSource
from voice_tutor.config import Config
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.dialogue.lesson_switch import LessonStack, LessonSwitcher
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
    TutorText,
)
from voice_tutor.learning.catalogue import Catalogue
from voice_tutor.learning.lessons import find_lesson, load_lesson
from voice_tutor.session import Session

pytestmark = pytest.mark.slow

GREETING_START = "Hi friend! Let's practise adding and taking away."
PRAISE = ("That's right!", "Yes, well done!", "Correct, nice work!", "Exactly right!")


def arithmetic() -> LessonTutor:
    config = Config()
    return LessonTutor(load_lesson(find_lesson("arithmetic", config.dialogue.lessons_dir)))


def switching(offline: LessonTutor) -> LessonSwitcher:
    """The lesson tutor behind the switcher every session has (other lessons open offline, unremembered)."""

    async def open_lesson(lesson):
        other = LessonTutor(lesson)
        return LessonStack(lesson, other.memory, other, other)

    catalogue = Catalogue.load(Config().dialogue.lessons_dir)
    return LessonSwitcher(catalogue, LessonStack(offline.lesson, offline.memory, offline, offline), open_lesson)


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


# --- what the offline tutor answers, given the words --------------------------------------------------

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
).split()


async def replay(texts: list[str]) -> tuple[str, list[tuple[str | None, str]]]:
    """The offline tutor's opening, and (question asked, reply) for each learner text, without audio.

    This is the reference a spoken session must match: the same tutor, fed the
    words the learner meant to say instead of what Whisper heard.
    """
    tutor, context = arithmetic(), DialogueContext("reference")
    opening = "".join([piece async for piece in tutor.opening(context)])
    replies = []
    for text in texts:
        asked = tutor.current.id if tutor.current else None
        replies.append((asked, "".join([piece async for piece in tutor.respond(text, context)])))
    return opening, replies


def last_prompt(reply: str) -> str | None:
    """The lesson question a reply ends by asking, if any."""
    prompts = [q.prompt for q in arithmetic().lesson.questions]
    return next((prompt for prompt in prompts if reply.endswith(prompt)), None)


# --- a multi-turn lesson through `voice-tutor talk --fast` -------------------------------------------

# What the learner means to do on each turn; the words are chosen for whatever question the tutor asks.
LESSON_INTENTS = ["wrong", "right", "hint", "right", "repeat", "wrong", "wrong", "stop", "after"]
NUMBER_RATES = [0.9, 1.0, 1.1]
SENTENCE_RATES = [0.9, 1.0, 1.1, 1.2]


def words_for(intent: str, question, wrong_before: int) -> tuple[str, str]:
    """(voice, text) the learner says to carry out ``intent`` on ``question``."""
    if intent == "hint":
        return "espeak", "Can you give me a hint please?"
    if intent == "repeat":
        return "piper", "Please say that again."
    if intent == "stop":
        return "piper", "Goodbye."
    if intent == "after":
        return "piper", "Twelve."
    if question.kind == "number":
        answer = int(question.answers[0])
        if intent == "right":
            return "piper", NUMBER_WORDS[answer].capitalize() + "."
        if wrong_before == 0 and question.misconceptions:  # the mistake the lesson anticipates
            return "piper", NUMBER_WORDS[int(question.misconceptions[0].answers[0])].capitalize() + "."
        return "piper", NUMBER_WORDS[answer + 2 + wrong_before].capitalize() + "."
    if intent == "right":
        return "piper", f"I think it's the {question.answers[0]}."
    if wrong_before == 0 and question.misconceptions:
        return "piper", f"Is it the {question.misconceptions[0].answers[-1].removeprefix('the ')}?"
    return "piper", "Is it the product?"


async def lesson_script(intents: list[str]) -> list[tuple[str, str, str, str | None, str]]:
    """(intent, voice, text, question asked, expected reply) per turn, by replaying the tutor."""
    offline, context = arithmetic(), DialogueContext("script")
    tutor = switching(offline)  # as `voice-tutor talk` runs it: a finished lesson offers what comes next
    [_ async for _ in tutor.opening(context)]
    wrong: dict[str, int] = {}
    script = []
    for intent in intents:
        question = offline.current
        voice, text = words_for(intent, question, wrong.get(question.id, 0) if question else 0)
        if intent == "wrong":
            wrong[question.id] = wrong.get(question.id, 0) + 1
        reply = "".join([piece async for piece in tutor.respond(text, context)])
        script.append((intent, voice, text, question.id if question else None, reply))
    return script


@pytest.fixture(scope="module")
async def lesson_talk(tmp_path_factory, say, espeak_say, run_cli):
    """`voice-tutor talk --fast --json` over a ten-turn recording of a learner working through the lesson."""
    from audio_fixtures import build_recording, write_wav

    script = await lesson_script(LESSON_INTENTS)
    parts = []
    for number, (_intent, voice, text, _asked, _reply) in enumerate(script):
        if voice == "espeak":
            speech = espeak_say(text)
        else:
            rates = NUMBER_RATES if text.rstrip(".").lower() in NUMBER_WORDS else SENTENCE_RATES
            speech = say(text, rates[number % len(rates)])
        parts.append((1.0 if number == 0 else 1.5, speech))
    audio, _ = build_recording(parts)
    workdir = tmp_path_factory.mktemp("lesson")
    learner, tutor_wav = write_wav(workdir / "learner.wav", audio), workdir / "tutor.wav"
    result = run_cli("talk", "--input", learner, "--output", tutor_wav, "--fast", "--json", timeout=180)
    return script, result, tutor_wav


def test_lesson_replies_follow_the_lesson(lesson_talk):
    script, result, _ = lesson_talk
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    turns = parse_turns(result.stdout)
    heard = [t["learner"] for t in turns]
    assert len(turns) == len(script), heard
    lesson = arithmetic().lesson
    questions = {q.id: q for q in lesson.questions}

    for turn, (intent, _voice, text, asked, expected) in zip(turns, script, strict=True):
        # Whisper heard what the learner said (up to spelling: 'Eleven.' may come back as '11.')...
        if intent in ("wrong", "right", "after") and asked and questions[asked].kind == "number":
            assert heard_numbers(turn["learner"]) == heard_numbers(text)
        # ... and the spoken session answered exactly as the tutor answers those words.
        assert turn["tutor"] == expected, (text, turn["learner"])
        reply, question = turn["tutor"], questions.get(asked)
        if intent == "wrong" and reply.startswith("Not quite.") and "hint" in reply:
            assert question.hints[0] in reply or question.hints[1] in reply
        if intent == "right":
            assert reply.startswith(PRAISE)
        if intent == "repeat":
            assert reply == question.prompt

    # The turns the issue names, spelled out.
    first = turns[0]
    assert heard_numbers(first["learner"]) == {11} and script[0][3] == "add-7-5"
    assert "hint" in first["tutor"] and questions["add-7-5"].hints[0] in first["tutor"]
    assert questions["add-7-5"].misconceptions[0].feedback in first["tutor"]  # 11 is the anticipated slip
    second = turns[1]
    assert heard_numbers(second["learner"]) == {12}
    assert second["tutor"].startswith(PRAISE) and "Next question." in second["tutor"]
    assert last_prompt(second["tutor"]) not in (None, questions["add-7-5"].prompt)
    assert turns[2]["tutor"].startswith("Here's a hint:")
    assert turns[-2]["tutor"].startswith("Okay, let's stop here.") and turns[-2]["tutor"].endswith(lesson.wrap_up)
    # After stopping, the tutor offers what comes next rather than a dead end.
    assert turns[-1]["tutor"].startswith("We've stopped Adding and subtracting within twenty for now.")
    assert "Which would you like?" in turns[-1]["tutor"]


def test_lesson_turns_report_what_was_heard_and_latencies(lesson_talk):
    _, result, _ = lesson_talk
    turns = parse_turns(result.stdout)
    assert turns
    for number, turn in enumerate(turns, start=1):
        assert set(turn) >= {"turn", "learner", "tutor", "heard", "cut", "latency_ms"}
        assert turn["turn"] == number
        assert turn["learner"] and turn["tutor"]
        assert turn["cut"] is False and turn["heard"] == turn["tutor"]  # nobody interrupted
        assert turn["clock"] == "compressed"  # --fast: these latencies are not real-time figures
        latency = turn["latency_ms"]
        assert set(latency) >= {"final_transcript", "first_audio"}
        # Measured from the learner's last voiced sample, in order, and well under the 10 s a stall would take.
        assert 0 < latency["final_transcript"] <= latency.get("first_text", latency["first_audio"])
        assert latency["final_transcript"] <= latency["first_audio"] < 10_000


def test_tutor_wav_holds_the_lesson_spoken(lesson_talk, recognizer):
    _, result, tutor_wav = lesson_talk
    assert result.returncode == 0
    audio, rate = soundfile.read(tutor_wav, dtype="float32")
    assert rate == 22050
    replies = " ".join(t["tutor"] for t in parse_turns(result.stdout))
    # Written back to back (--fast): about as long as the greeting plus every reply takes to say.
    assert 0.03 <= len(audio) / rate / len(GREETING_START + replies) <= 0.12
    assert rms(audio) > 0.03
    # The first 20 s (the greeting, the first question and the first replies) are heard as the lesson's words.
    heard = wer_text(recognizer.transcribe(to_16k(audio[: 20 * rate], rate)).text)
    for words in ("adding and taking away", "7 plus 5", "hint", "make 10"):
        assert words in heard, heard


# --- barge-in ----------------------------------------------------------------------------------------

BARGE_IN_TEXTS = ["Twelve.", "Can you say that again please?"]


@pytest.fixture(scope="module")
def barge_in_recording(tmp_path_factory, say):
    """'Twelve.' 3 s into the greeting, then 'Can you say that again please?' ~1.5 s into the reply to it."""
    from audio_fixtures import build_recording, write_wav

    twelve, again = (say(text) for text in BARGE_IN_TEXTS)
    # The reply to 'Twelve.' starts ~0.4 s after it ends (end-of-turn silence plus answering).
    again_at = 3.0 + len(twelve) / SAMPLE_RATE + 0.4 + 1.5
    audio, placed = build_recording([(3.0, twelve), (again_at - 3.0 - len(twelve) / SAMPLE_RATE, again)])
    path = write_wav(tmp_path_factory.mktemp("barge") / "learner.wav", audio)
    return path, placed


async def test_barge_in_cuts_the_reply_in_real_time(barge_in_recording, run_cli, tmp_path):
    learner, placed = barge_in_recording
    _, [(_, answer_expected), (_, repeat_expected)] = await replay(BARGE_IN_TEXTS)
    tutor_wav = tmp_path / "tutor.wav"
    result = run_cli("talk", "--input", learner, "--output", tutor_wav, "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    turns = parse_turns(result.stdout)
    assert heard_numbers(turns[0]["learner"]) == {12}
    assert wer_text(turns[1]["learner"]) == "can you say that again please"

    answer, repeat = turns
    assert answer["tutor"] == answer_expected and answer["tutor"].startswith(PRAISE)
    assert answer["cut"] is True
    assert answer["heard"] != answer["tutor"] and answer["tutor"].startswith(answer["heard"])
    # The reply had been playing for a second or more when the learner spoke: some of it was heard.
    twelve, again = placed
    playing_s = again.start - twelve.end - answer["latency_ms"]["first_audio"] / 1000
    if playing_s > 0.8:
        assert answer["heard"], playing_s
    # 'Say that again' repeats the question the cut reply was asking, which the learner did not hear.
    assert repeat["tutor"] == repeat_expected == last_prompt(answer["tutor"])
    assert repeat["cut"] is False and repeat["heard"] == repeat["tutor"]

    # tutor.wav is the session's timeline: the tutor fell silent soon after the learner started speaking,
    # and stayed silent until the learner's turn was over.
    twelve, again = placed
    assert loudest_between(tutor_wav, 0.5, twelve.start) > 0.05  # the greeting was playing
    assert loudest_between(tutor_wav, twelve.start + 0.6, twelve.end + 0.25) < 0.005
    assert loudest_between(tutor_wav, twelve.end + 0.4, again.start) > 0.05  # the reply was playing
    # Until the clip ends: the reply to it may start within 250 ms of that now (the clip ends in piper's trailing
    # silence, and the player no longer plays piper's silent lead-in), so no margin after it is asked for.
    assert loudest_between(tutor_wav, again.start + 0.6, again.end) < 0.005


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
        assert cut.heard != cut.text and cut.text.startswith(cut.heard)  # a proper prefix
    assert ended[0].text.startswith("Hi friend!")
    [greeting_started] = [e for e in events if isinstance(e, TutorSpeechStarted) and e.turn_id == 0]
    first_speech = events[events.index(barge_ins[0]) - 1]
    if first_speech.t - greeting_started.t > 1.0:  # the whole first sentence had been played
        assert ended[0].heard.startswith("Hi friend!")
    assert ended[2].cut is False

    # Each cut followed the speech that caused it at once: measured from the events' own timestamps.
    for barge_in in barge_ins:
        index = events.index(barge_in)
        started = events[index - 1]
        assert isinstance(started, SpeechStarted)
        cut = ended[barge_in.turn_id]
        assert events.index(cut) > index
        delay = cut.t - started.t
        print(f"turn {barge_in.turn_id}: speech started -> tutor speech ended in {delay * 1000:.0f} ms")
        # One 40 ms block plus scheduling: ~10-40 ms on an idle machine; the bound leaves room for a loaded one
        # and still fails a cut that waits for the sentence (or the reply) to end.
        assert 0 <= delay < 0.2

    # The first cut came when the learner spoke, ~3 s into the session (not at some stray sound):
    # the session starts with the greeting's text, at the same moment the recording starts to play.
    session_start = next(e.t for e in events if isinstance(e, TutorText))
    assert placed[0].start - 0.2 < first_speech.t - session_start < placed[0].start + 0.8

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
    _, [(_, expected)] = await replay(["Seven plus five is twelve."])
    assert turn.tutor == expected and turn.tutor.startswith(PRAISE)


async def test_the_same_pause_after_a_finished_answer_ends_the_turn(speech_models, say, recording, tmp_path):
    """The control: after words that sound finished, 0.7 s of silence is the end of the turn."""
    learner, _ = recording([(1.0, say("Eleven.")), (0.7, say("Twelve."))])
    _, turns, _ = await run_session(speech_models, learner, tmp_path / "tutor.wav", realtime=False)
    assert [heard_numbers(t.learner) for t in turns] == [{11}, {12}]
    _, expected = await replay(["Eleven.", "Twelve."])
    assert [t.tutor for t in turns] == [reply for _, reply in expected]
    assert "hint" in turns[0].tutor and turns[1].tutor.startswith(PRAISE)


async def test_a_slow_pause_after_minus_does_not_end_the_turn(speech_models, say, recording, tmp_path):
    """Whisper base hears this paused, slow 'Fifteen minus' as a loop: '15 minus. 15 minus. ... 15'.

    Collapsed badly ('15 minus. 15') it sounds finished and the learner is cut off mid-sentence.
    """
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
    assert [heard_numbers(t["learner"]) for t in turns] == [{11}, {12}]
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
    assert heard_numbers(first["messages"][-1]["content"]) == {11}
    # The second turn sees the first exchange as the learner heard it.
    assert [m["role"] for m in second["messages"][-3:]] == ["user", "assistant", "user"]
    assert second["messages"][-2]["content"].startswith("Tutor heard:")
    assert heard_numbers(second["messages"][-1]["content"]) == {12}


def test_llm_history_includes_the_opening_the_learner_heard(llm_talk):
    _, server = llm_talk
    _opening, first, _second = server.completion_bodies()
    assistant = [m["content"] for m in first["messages"] if m["role"] == "assistant"]
    assert any(text.startswith("Tutor heard:") for text in assistant), first["messages"]




def test_talk_json_reports_every_fallback_and_why(start_llm, tmp_path, say, run_cli):
    """An endpoint that lists its model but fails every completion: each turn says whose answer it was."""
    from audio_fixtures import build_recording, write_wav

    server = start_llm("--fail-status", "500")
    audio, _ = build_recording([(1.0, say("Eleven.")), (1.5, say("Twelve.", 1.1))])
    learner = write_wav(tmp_path / "learner.wav", audio)
    result = run_cli(
        "talk", "--fast", "--json", "--input", learner, "--output", tmp_path / "tutor.wav",
        "--llm-url", server.url, "--llm-model", "tutor-test", timeout=120,
    )
    assert result.returncode == 0, result.stderr
    turns = parse_turns(result.stdout)
    assert [heard_numbers(t["learner"]) for t in turns] == [{11}, {12}]
    # The opening and the first turn failed (HTTP 500), reported with the first turn; then the circuit
    # opened and the LLM was not asked again.
    assert [f["kind"] for f in turns[0]["fallbacks"]] == ["http_error", "http_error"]
    assert [f["kind"] for f in turns[1]["fallbacks"]] == ["circuit_open"]
    assert "answered HTTP 500" in turns[0]["fallbacks"][0]["reason"]
    assert all(f["backend"] == "chat:tutor-test" for t in turns for f in t["fallbacks"])
    assert any(praise in turns[1]["tutor"] for praise in PRAISE)  # the offline tutor taught the lesson
    assert len(server.completion_bodies()) == 2


async def greet_with_llm_then_lose_it(tmp_path) -> tuple[str, str, list[Exception]]:
    """FallbackTutor(ChatTutor, offline tutor): the LLM greets, its server stops, the learner says 'Twelve.'."""
    from conftest import start_llm_server, stop_llm_server
    from voice_tutor.config import LLMConfig
    from voice_tutor.dialogue.base import FallbackTutor
    from voice_tutor.dialogue.llm import ChatTutor
    from voice_tutor.dialogue.prompts import lesson_system_prompt

    server = start_llm_server(tmp_path, "--token-delay-ms", "1")
    offline = arithmetic()
    fallbacks: list[Exception] = []
    chat = ChatTutor(LLMConfig(base_url=server.url, model="tutor-test", timeout_s=5.0),
                     lesson_system_prompt(offline.lesson))
    tutor = FallbackTutor(chat, offline, on_fallback=fallbacks.append)
    context = DialogueContext("s1")
    try:
        try:
            opening = "".join([piece async for piece in tutor.opening(context)])
        finally:
            stop_llm_server(server.process)
        reply = "".join([piece async for piece in tutor.respond("Twelve.", context)])
    finally:
        await chat.aclose()
    return opening, reply, fallbacks


async def test_offline_tutor_answers_when_the_llm_dies_mid_lesson(tmp_path):
    from voice_tutor.dialogue.base import DialogueUnavailable

    opening, reply, fallbacks = await greet_with_llm_then_lose_it(tmp_path)
    assert opening.startswith("Tutor heard:")  # the greeting came from the LLM
    [error] = fallbacks  # the turn fell back, once, with the reason
    assert isinstance(error, DialogueUnavailable) and str(error).endswith("unreachable: connection refused")
    assert reply and not reply.startswith("Tutor heard:")  # the learner was not left in silence


async def test_offline_fallback_after_an_llm_greeting_teaches_the_lesson(tmp_path):
    """The offline tutor never asked a question (the LLM greeted): it must start the lesson, not end it."""
    _, reply, _ = await greet_with_llm_then_lose_it(tmp_path)
    assert not reply.startswith("We have finished this lesson."), reply
    assert last_prompt(reply) is not None, reply  # it asks a question of the lesson
