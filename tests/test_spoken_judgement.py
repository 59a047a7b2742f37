"""Spoken answers judged through the real recognizer, biased towards the pending question's answers.

Real speech (the bundled piper voice and espeak-ng) through the bundled
faster-whisper model, the way a session transcribes a turn; the transcript is
judged by the tutor's own understanding.  benchmarks/spoken_judgement.py runs
the whole corpus with more voices.
"""

from __future__ import annotations

import asyncio

import pytest

from voice_tutor.audio.sinks import WavFileSink
from voice_tutor.audio.sources import PcmSource
from voice_tutor.config import Config
from voice_tutor.dialogue.answers import check_answer
from voice_tutor.dialogue.intent import Intent, answer_words, understand
from voice_tutor.events import AnswerExpected
from voice_tutor.learning.lessons import find_lesson, load_lesson
from voice_tutor.speech.stt import hotwords_for
from voice_tutor.tutoring import Tutoring


@pytest.fixture(scope="module")
def arithmetic():
    return load_lesson(find_lesson("arithmetic", Config().dialogue.lessons_dir))


def heard_as(recognizer, audio, lesson, question):
    hotwords = hotwords_for(" ".join(lesson.vocabulary), *answer_words(question))
    transcript = recognizer.transcribe_turn(audio, hotwords=hotwords, language=lesson.answer_language)
    return transcript, understand(transcript.text, question, lesson.answer_language, confidence=transcript.confidence)


@pytest.mark.parametrize("voice", ["piper", "piper slow", "espeak"])
def test_a_spoken_right_answer_is_never_judged_wrong_or_off_topic(voice, recognizer, say, espeak_say, arithmetic):
    question = arithmetic.questions[0]
    sentence = "I think the answer is twelve."
    audio = {"piper": lambda: say(sentence), "piper slow": lambda: say(sentence, 1.3),
             "espeak": lambda: espeak_say(sentence)}[voice]()
    transcript, heard = heard_as(recognizer, audio, arithmetic, question)
    assert transcript.confidence is not None and 0 < transcript.confidence <= 1
    assert heard.intent in (Intent.ANSWER, Intent.CONFIRM), transcript.text
    if heard.intent is Intent.ANSWER:
        assert check_answer(heard.graded_text, question.answers, question.kind).correct, transcript.text
    else:
        assert heard.candidates == ("12",) or heard.candidates == ("twelve",), transcript.text


def test_biasing_does_not_turn_a_spoken_wrong_answer_right(recognizer, say, arithmetic):
    question = arithmetic.questions[0]
    for sentence in ("Eleven.", "I think it's thirteen."):
        transcript, heard = heard_as(recognizer, say(sentence), arithmetic, question)
        assert not (heard.intent is Intent.ANSWER
                    and check_answer(heard.graded_text, question.answers, question.kind).correct), transcript.text


def test_spoken_questions_and_hedges_are_not_graded(recognizer, say, arithmetic):
    question = arithmetic.questions[0]
    _, asked = heard_as(recognizer, say("Why do heavier objects not fall faster than lighter ones?"), arithmetic,
                        question)
    assert asked.intent is Intent.QUESTION
    transcript, hedged = heard_as(recognizer, say("Maybe eleven, or twelve?"), arithmetic, question)
    assert hedged.intent is Intent.CHOOSE, transcript.text


async def test_a_session_biases_recognition_towards_the_pending_answers(speech_models, tmp_path):
    tutoring = await Tutoring.open(Config())
    source = PcmSource(16_000)
    sink = WavFileSink(tmp_path / "tutor.wav", speech_models.synthesizer.sample_rate, realtime=False)
    session = tutoring.session(speech_models, source, sink)
    events = session.bus.subscribe()
    running = asyncio.create_task(session.run())
    expected = None
    while expected is None:
        event = await asyncio.wait_for(events.get(), 60)
        if isinstance(event, AnswerExpected):
            expected = event
    source.close()
    await running
    vocabulary = " ".join(tutoring.lesson.vocabulary)
    assert expected.question_id == tutoring.lesson.questions[0].id
    assert session.recognition_hotwords == hotwords_for(vocabulary, *expected.words)
    assert "twelve" in session.recognition_hotwords.split()
