"""A teacher's message reaches the learner through the tutor's voice, and never over anyone."""

from __future__ import annotations

import asyncio

from voice_tutor.audio.sinks import WavFileSink
from voice_tutor.audio.sources import PcmSource
from voice_tutor.config import Config
from voice_tutor.events import TutorSpeechEnded
from voice_tutor.tutoring import Tutoring


async def _spoken_turns(session, count: int) -> list[TutorSpeechEnded]:
    events = session.bus.subscribe()
    ended: list[TutorSpeechEnded] = []
    while len(ended) < count:
        event = await asyncio.wait_for(events.get(), 60)
        if isinstance(event, TutorSpeechEnded):
            ended.append(event)
    return ended


async def test_a_hint_sent_before_the_greeting_is_said_after_it(speech_models, tmp_path):
    tutoring = await Tutoring.open(Config())
    source = PcmSource(16_000)
    sink = WavFileSink(tmp_path / "tutor.wav", speech_models.synthesizer.sample_rate, realtime=False)
    session = tutoring.session(speech_models, source, sink)
    running = asyncio.create_task(session.run())
    session.add_hint("Remember to count on from the bigger number.")
    greeting, hint = await _spoken_turns(session, 2)
    source.close()
    await running
    assert greeting.turn_id == 0 and greeting.heard.startswith("Hi friend!")
    assert hint.turn_id > greeting.turn_id and not hint.cut
    assert hint.heard == "Your teacher says: Remember to count on from the bigger number."
