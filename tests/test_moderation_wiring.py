"""The configured moderation endpoint checks learner words, through the tutor the sessions use."""

from __future__ import annotations

import pytest
from conftest import start_llm_server, stop_llm_server

from voice_tutor.config import Config, DialogueConfig, LLMConfig
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.tutoring import Tutoring


async def _reply(tutoring: Tutoring, text: str) -> str:
    context = DialogueContext("s1", "Sam")
    return "".join([piece async for piece in tutoring.tutor.respond(text, context)])


@pytest.fixture
def llm(tmp_path):
    server = start_llm_server(tmp_path)
    yield server
    stop_llm_server(server.process)


def _config(llm, moderation: bool) -> Config:
    return Config(
        llm=LLMConfig(base_url=llm.url, model="tutor-test", timeout_s=5.0, moderation=moderation),
        dialogue=DialogueConfig(lesson="arithmetic"),
    )


def _moderation_inputs(llm) -> list[str]:
    return [request["body"]["input"] for request in llm.requests() if request["path"] == "/v1/moderations"]


async def test_flagged_learner_words_get_the_redirection_not_the_llm(llm):
    tutoring = await Tutoring.open(_config(llm, moderation=True))
    reply = await _reply(tutoring, "I will bring dragonfire to school")
    assert "Tutor heard:" not in reply  # the LLM never saw it
    assert "teacher" in reply.lower()  # the calm redirection of the violence category
    assert _moderation_inputs(llm) == ["I will bring dragonfire to school"]


async def test_harmless_words_reach_the_llm_after_moderation(llm):
    tutoring = await Tutoring.open(_config(llm, moderation=True))
    reply = await _reply(tutoring, "Twelve")
    assert reply.startswith("Tutor heard: Twelve")
    assert _moderation_inputs(llm) == ["Twelve"]


async def test_without_moderation_configured_nothing_is_sent_for_moderation(llm):
    tutoring = await Tutoring.open(_config(llm, moderation=False))
    await _reply(tutoring, "I will bring dragonfire to school")
    assert _moderation_inputs(llm) == []
