"""The safety filter: categories, school-context false positives, personal data, hostile input,
OpenAI moderation over real HTTP on loopback, and the SafeTutor wrapper around real and scripted tutors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_tutor.config import ASSETS_DIR
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.dialogue.lesson_tutor import LessonTutor
from voice_tutor.dialogue.safety import (
    REPLIES,
    TUTOR_REPLACEMENT,
    Category,
    SafeTutor,
    SafetyVerdict,
    check,
    moderate_remote,
    redact,
)
from voice_tutor.learning.lessons import load_lesson
from voice_tutor.speech.sentences import SentenceChunker

# ---------------------------------------------------------------- categories


@pytest.mark.parametrize("text", [
    "I want to kill myself",
    "i just want to die",
    "Sometimes I think about killing myself",
    "I wish I was dead",
    "I wish I was never born",
    "I don't want to live anymore",
    "I've been feeling suicidal",
    "I'm thinking about suicide",
    "I keep cutting myself",
    "I want to hurt myself",
    "everyone would be better off without me",
    "nobody would miss me",
    "there's no point in living",
    "I'm going to end it all",
])
def test_self_harm_is_redirected_to_a_trusted_adult_and_alerts(text):
    verdict = check(text)
    assert (verdict.category, verdict.severity, verdict.alert) == (Category.SELF_HARM, "high", True)
    assert verdict.matched and verdict.matched.lower() in text.lower()
    assert verdict.learner_reply == REPLIES[Category.SELF_HARM]
    assert "grown-up you trust" in verdict.learner_reply and "teacher" in verdict.learner_reply


@pytest.mark.parametrize(("text", "category", "severity", "alert"), [
    ("I'm going to kill him", Category.VIOLENCE, "high", True),
    ("I'll stab you", Category.VIOLENCE, "high", True),
    ("we're gonna beat up the new kid", Category.VIOLENCE, "high", True),
    ("I want to punch Tom tomorrow", Category.VIOLENCE, "high", True),
    ("I'm bringing a knife to school", Category.VIOLENCE, "high", True),
    ("someone should shoot up the school", Category.VIOLENCE, "high", True),
    ("how do I make a bomb?", Category.VIOLENCE, "low", False),
    ("he touched me in my private parts", Category.SEXUAL, "high", True),
    ("a man online asked me to send pictures of myself", Category.SEXUAL, "high", True),
    ("send me a picture of yourself", Category.SEXUAL, "high", True),
    ("I watched porn", Category.SEXUAL, "high", True),
    ("do you want to have sex", Category.SEXUAL, "high", True),
    ("you're so sexy", Category.SEXUAL, "low", False),
    ("you're a retard", Category.HATE, "high", True),
    ("kill yourself", Category.HATE, "high", True),
    ("all immigrants should go back", Category.HATE, "high", True),
    ("go back to your own country", Category.HATE, "high", True),
    ("I hate muslims", Category.HATE, "low", True),
    ("I want to try drugs", Category.DRUGS, "low", True),
    ("let's smoke weed after school", Category.DRUGS, "low", True),
    ("where can I buy cocaine", Category.DRUGS, "low", True),
    ("I want to get high", Category.DRUGS, "low", True),
    ("me and my friends vape", Category.DRUGS, "low", True),
    ("I'm being bullied", Category.BULLYING, "high", True),
    ("they keep picking on me", Category.BULLYING, "high", True),
    ("the older kids call me names every day", Category.BULLYING, "high", True),
    ("my dad hits me", Category.BULLYING, "high", True),
    ("nobody wants to play with me", Category.BULLYING, "high", True),
    ("everyone hates me", Category.BULLYING, "high", True),
    ("let's make fun of him", Category.BULLYING, "low", True),
])
def test_each_category(text, category, severity, alert):
    verdict = check(text)
    assert (verdict.category, verdict.severity, verdict.alert) == (category, severity, alert)
    assert verdict.learner_reply and not verdict.safe
    assert verdict.source == "learner"


def test_disclosures_get_a_reply_that_says_it_is_not_their_fault():
    for text in ["he touched me in my private parts", "I'm being bullied"]:
        reply = check(text).learner_reply
        assert "not your fault" in reply and "grown-up you trust" in reply


@pytest.mark.parametrize("text", [
    # computing, biology, history, sport, medicine: a school's ordinary words
    "how do I kill the process?",
    "we should kill the process and restart it",
    "the cell dies without oxygen",
    "the plant will die without water",
    "the atomic bomb was dropped on Hiroshima in 1945",
    "in history class we learned how they built the atomic bomb",
    "I'm going to shoot a basketball",
    "I want to shoot hoops with my friends",
    "aspirin is a drug that lowers a fever",
    "patients take drugs prescribed by a doctor",
    "some drugs are made from plants",
    "Sherlock Holmes took cocaine in the stories",
    "sexual reproduction needs two sex cells",
    "flowers have sex organs called stamens and carpels",
    "the penis and vagina are reproductive organs",
    "the wolf wanted to kill the three little pigs",
    "this homework is killing me",
    "I'm dying to know the answer",
    "I'm going to die of boredom",
    "I hurt myself playing football",
    "the ball hit me on the head",
    "I don't want to live in London",
    "you get high marks for neat work",
    "a chink in the armour",
    "blow up the balloon",
    "I'm going to kill time before the bus",
    "the soldiers fought a battle and many were killed",
    "what is seven plus five?",
    "photosynthesis makes glucose",
    "I can't wait to smoke the competition at sports day",
    "you're stupid",  # frustration at the tutor: the dialogue's business, not an alarm
])
def test_school_context_is_not_flagged(text):
    verdict = check(text)
    assert verdict.safe, verdict
    assert (verdict.category, verdict.matched, verdict.learner_reply, verdict.alert) == (Category.NONE, "", None, False)
    assert verdict.redacted_text == text


@pytest.mark.parametrize("path", sorted((ASSETS_DIR / "lessons").glob("*.toml")), ids=lambda p: p.stem)
def test_every_line_of_every_shipped_lesson_is_safe_to_say(path):
    lesson = load_lesson(path)
    texts = [lesson.greeting, lesson.wrap_up, *lesson.objectives]
    for question in lesson.questions:
        texts += [question.prompt, question.explanation, *question.hints, *question.answers]
        texts += [m.feedback for m in question.misconceptions]
    texts += [skill.description for skill in lesson.skills] + [rule.say for rule in lesson.rules]
    texts += [resource.title for resource in lesson.resources]
    flagged = [(text, check(text, source="tutor").category) for text in texts if not check(text, source="tutor").safe]
    assert flagged == []


def test_insults_are_flagged_only_when_the_tutor_says_them():
    assert check("You're so stupid.").safe
    verdict = check("You're so stupid.", source="tutor")
    assert (verdict.category, verdict.severity, verdict.source) == (Category.HATE, "low", "tutor")
    assert verdict.learner_reply == TUTOR_REPLACEMENT


def test_tutor_output_gets_a_neutral_line_and_alerts_only_when_serious():
    serious = check("You should kill yourself.", source="tutor")
    assert serious.learner_reply == TUTOR_REPLACEMENT and serious.alert
    mild = check("How do I make a bomb? Easy.", source="tutor")
    assert mild.learner_reply == TUTOR_REPLACEMENT and not mild.alert


def test_every_redirection_is_itself_safe_to_say():
    for reply in [*REPLIES.values(), TUTOR_REPLACEMENT] + [check(t).learner_reply for t in (
        "he touched me in my private parts", "how do I make a bomb?", "let's make fun of him",
    )]:
        assert check(reply, source="tutor").safe, reply


@pytest.mark.parametrize("text", [
    "I want to k\u200bill myself",  # zero-width space
    "I want to ｋｉｌｌ ｍｙｓｅｌｆ",  # full-width letters
    "I don\u2019t want to live anymore",  # curly apostrophe
    "I WANT TO KILL MYSELF",
    "i want to kill   my self!!!",
])
def test_cheap_disguises_do_not_hide_self_harm(text):
    assert check(text).category is Category.SELF_HARM


def test_the_most_serious_finding_decides_and_personal_data_is_still_redacted():
    verdict = check("I want to die. My email is sam@example.com")
    assert verdict.category is Category.SELF_HARM
    assert verdict.redacted_text == "I want to die. My email is [email]"


def test_verdict_is_frozen():
    verdict = check("hello")
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.alert = True  # type: ignore[misc]
    assert Category.SELF_HARM == "self_harm"


# ---------------------------------------------------------------- personal data


@pytest.mark.parametrize(("text", "redacted", "kind"), [
    ("my email is sam.smith+school@example.co.uk", "my email is [email]", "[email]"),
    ("email me at sam dot smith at gmail dot com", "email me at [email]", "[email]"),
    ("call me on 555-234-5678", "call me on [phone]", "[phone]"),
    ("my number is (555) 234-5678", "my number is [phone]", "[phone]"),
    ("our home phone is +44 20 7946 0958", "our home phone is [phone]", "[phone]"),
    ("ring me on 07700 900123 tonight", "ring me on [phone] tonight", "[phone]"),
    ("my mum's number is 7946 0958", "my mum's number is [phone]", "[phone]"),
    ("my card is 4111 1111 1111 1111", "my card is [card]", "[card]"),
    ("the card number 5500-0000-0000-0004 is mum's", "the card number [card] is mum's", "[card]"),
    ("amex 3782 822463 10005", "amex [card]", "[card]"),
    ("my password is hunter2", "my password is [password]", "[password]"),
    ("our wifi password is banana split and I like maths",
     "our wifi password is [password] and I like maths", "[password]"),
    ("password: Tr0ub4dor&3", "password: [password]", "[password]"),
    ("my pin is 4321", "my pin is [password]", "[password]"),
    ("I live at 42 Elm Street", "I live at [address]", "[address]"),
    ("I live at 221B Baker Street, London", "I live at [address], London", "[address]"),
    ("I live on Baker Street", "I live on [address]", "[address]"),
    ("we moved to 5 Oak Drive", "we moved to [address]", "[address]"),
    ("my address is 10 Downing Street, London SW1A 2AA", "my address is [address]", "[address]"),
    ("my zip code is 90210", "my zip code is [address]", "[address]"),
    ("my social security number is 123-45-6789", "my social security number is [id number]", "[id number]"),
    ("my name is Sam Smith", "my name is [name]", "[name]"),
    ("my full name is sam smith and I like maths", "my full name is [name] and I like maths", "[name]"),
])
def test_each_kind_of_personal_data_is_redacted(text, redacted, kind):
    verdict = check(text)
    assert verdict.category is Category.PERSONAL_DATA
    assert (verdict.severity, verdict.alert) == ("low", False)
    assert verdict.redacted_text == redacted == redact(text)
    assert verdict.matched == kind  # the kind, never the data: verdicts may be logged
    assert verdict.learner_reply == "You don't need to tell me that. Let's keep it private."


def test_a_first_name_alone_is_fine_but_not_beside_an_address():
    assert check("my name is Sam").safe
    verdict = check("my name is Sam and I live at 42 Elm Street")
    assert verdict.redacted_text == "my name is [name] and I live at [address]"
    assert verdict.matched == "[name] [address]"


def test_tutor_output_with_personal_data_is_said_redacted():
    verdict = check("I'll write to sam@example.com.", source="tutor")
    assert verdict.learner_reply == verdict.redacted_text == "I'll write to [email]."


@pytest.mark.parametrize("text", [
    "the date is 2024-01-15",
    "pi is 3.14159265 and 0.1234567891 is small",
    "count with me: 1 2 3 4 5 6 7 8 9 10 11 12",
    "the answer is 1234567",
    "there are 10 000 000 000 stars",
    "the ISBN is 978-3-16-148410-0",
    "4111 1111 1111 1112 fails the check",  # one digit off a valid card number
    "0000 0000 0000 0000",
    "a strong password is long",
    "the pin is sharp",
    "I live on a farm",
    "I live in London",
    "2 apples in a row",
    "3 cars on the road",
    "4 wheel drive",
    "look at this dot",
    "12 + 5 = 17",
    "at 10:30 we have 25 minutes of break",
])
def test_numbers_and_words_that_are_not_personal_data_are_left_alone(text):
    verdict = check(text)
    assert verdict.safe, verdict
    assert verdict.redacted_text == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_handled(text):
    verdict = check(text)
    assert isinstance(verdict, SafetyVerdict)
    assert verdict.redacted_text == redact(text)
    assert check(text, source="tutor").redacted_text == verdict.redacted_text


_PIECES = [
    "my name is", "I live at", "my number is", "my password is", "call me on", "and", "12", "7", "Sam",
    "Smith", "Street", "dot", "at", "com", "-", "+", "(", ")", "[email]", "[name]",
    "sam@example.com", "a.b+c@school.org", "4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004",
    "+44 20 7946 0958", "555-234-5678", "123-45-6789",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map(" and ".join))
def test_emails_cards_and_phones_never_survive_redaction(text):
    redacted = redact(text)
    assert "@" not in redacted
    for secret in ("4111", "5500", "7946", "234-5678", "45-6789"):
        assert secret not in redacted, (text, redacted)


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize("shape", [
    "a" * 100_000,
    "1" * 100_000,
    "1 " * 50_000,
    "i " * 50_000,
    "a@" * 50_000,
    "a." * 50_000,
    "Aa " * 33_333,
    "\u200bé😀" * 33_333,
    "i want to " * 10_000,
    "my name is " * 9_000,
])
def test_100_kb_of_hostile_text_is_checked_quickly(shape):
    started = time.perf_counter()
    verdict = check(shape)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, elapsed  # linear: about 0.1 to 0.4 s here
    assert len(verdict.redacted_text) > 0


def test_unsafe_words_at_the_end_of_100_kb_are_found_and_many_emails_redacted():
    text = "blah " * 20_000 + "I want to kill myself"
    assert check(text).category is Category.SELF_HARM
    many = "write to a@b.co " * 6_000
    started = time.perf_counter()
    redacted = redact(many)
    assert time.perf_counter() - started < 2.0
    assert redacted.count("[email]") == 6_000 and "@" not in redacted


# ---------------------------------------------------------------- OpenAI moderation over real HTTP

_OPENAI_CATEGORIES = [
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
]


class _ModerationServer:
    """A real HTTP server speaking OpenAI's /v1/moderations on 127.0.0.1.

    It flags the categories whose trigger word is in the input, fails with
    ``status``, or answers after ``delay_s``; ``inputs`` records what was sent.
    """

    def __init__(self):
        self.triggers: dict[str, list[str]] = {}
        self.status = 200
        self.delay_s = 0.0
        self.inputs: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.inputs.append(body["input"])
                time.sleep(server.delay_s)
                if server.status != 200:
                    payload = {"error": {"message": "down", "type": "server_error", "code": None}}
                else:
                    flagged = {c for word, cats in server.triggers.items() if word in body["input"] for c in cats}
                    result = {
                        "flagged": bool(flagged),
                        "categories": {c: c in flagged for c in _OPENAI_CATEGORIES},
                        "category_scores": {c: 0.9 if c in flagged else 0.01 for c in _OPENAI_CATEGORIES},
                        "category_applied_input_types": {c: ["text"] for c in _OPENAI_CATEGORIES},
                    }
                    payload = {"id": "modr-1", "model": "omni-moderation-latest", "results": [result]}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def client(self, cls=openai.AsyncOpenAI):
        return cls(base_url=self.url, api_key="test-key", max_retries=0)


@pytest.fixture
def moderation():
    server = _ModerationServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


async def test_remote_moderation_catches_what_the_local_filter_misses(moderation):
    moderation.triggers = {"vanish": ["self-harm", "self-harm/intent"], "meanie": ["harassment"]}
    text = "I just want to vanish forever"
    assert check(text).safe
    verdict = await moderate_remote(text, moderation.client())
    assert (verdict.category, verdict.severity, verdict.alert) == (Category.SELF_HARM, "high", True)
    assert verdict.matched == "openai:self-harm/intent"
    assert verdict.learner_reply == REPLIES[Category.SELF_HARM]
    mild = await moderate_remote("you big meanie", moderation.client())
    assert (mild.category, mild.severity, mild.alert) == (Category.HATE, "low", False)
    tutor = await moderate_remote("you big meanie", moderation.client(), source="tutor")
    assert tutor.learner_reply == TUTOR_REPLACEMENT and tutor.source == "tutor"


async def test_remote_moderation_sees_only_redacted_text_and_keeps_the_privacy_reply(moderation):
    verdict = await moderate_remote("my email is sam@example.com and 7 plus 5 is 12", moderation.client())
    assert moderation.inputs == ["my email is [email] and 7 plus 5 is 12"]
    assert verdict.category is Category.PERSONAL_DATA
    assert verdict.learner_reply == REPLIES[Category.PERSONAL_DATA]


async def test_a_serious_local_finding_is_not_sent_at_all(moderation):
    verdict = await moderate_remote("I want to kill myself", moderation.client())
    assert verdict.category is Category.SELF_HARM and moderation.inputs == []


async def test_an_unflagged_reply_keeps_the_local_verdict(moderation):
    verdict = await moderate_remote("what is seven plus five?", moderation.client())
    assert verdict.safe and moderation.inputs == ["what is seven plus five?"]


async def test_endpoint_failures_fall_back_to_the_local_verdict(moderation, caplog):
    moderation.status = 500
    with caplog.at_level(logging.WARNING, logger="voice_tutor.dialogue.safety"):
        verdict = await moderate_remote("let's smoke weed", moderation.client())
    assert verdict == check("let's smoke weed")
    assert "moderation endpoint failed" in caplog.text
    unreachable = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0)
    assert (await moderate_remote("hello there", unreachable)).safe


async def test_a_slow_endpoint_does_not_keep_the_learner_waiting(moderation):
    moderation.delay_s = 2.0
    started = time.perf_counter()
    verdict = await moderate_remote("hello there", moderation.client(), timeout_s=0.2)
    assert time.perf_counter() - started < 1.0
    assert verdict.safe


async def test_a_blocking_client_runs_in_a_thread(moderation):
    moderation.triggers = {"vanish": ["self-harm/intent"]}
    loop_ticks = 0

    async def ticker():
        nonlocal loop_ticks
        while True:
            loop_ticks += 1
            await asyncio.sleep(0.01)

    moderation.delay_s = 0.2
    task = asyncio.create_task(ticker())
    verdict = await moderate_remote("I want to vanish", moderation.client(openai.OpenAI))
    task.cancel()
    assert verdict.category is Category.SELF_HARM
    assert loop_ticks >= 5  # the event loop kept running while the request was in flight


# ---------------------------------------------------------------- SafeTutor


class ScriptedTutor:
    """A tiny tutor that streams a fixed reply piece by piece and records what it was asked."""

    name = "scripted"

    def __init__(self, reply: str, opening: str = "Hello! Let's begin."):
        self.reply = reply
        self.opening_text = opening
        self.received: list[str] = []
        self.closed = False

    async def opening(self, context):
        for word in self.opening_text.split(" "):
            yield word + " "

    async def respond(self, learner_text, context):
        self.received.append(learner_text)
        try:
            words = self.reply.split(" ")
            for i, word in enumerate(words):
                await asyncio.sleep(0)
                yield word + (" " if i < len(words) - 1 else "")
        finally:
            self.closed = True


async def _say(tutor, text: str) -> str:
    context = DialogueContext(session_id="s1")
    return "".join([piece async for piece in tutor.respond(text, context)])


def _spoken_sentences(reply: str) -> list[str]:
    """What the responder would hand to TTS, cut the way it cuts."""
    chunker = SentenceChunker()
    return chunker.push(reply) + chunker.flush()


async def test_safe_turns_pass_through_unchanged():
    inner = ScriptedTutor("Great thinking. Seven plus five is twelve. Next, what is eight plus nine?")
    alerts: list[SafetyVerdict] = []
    tutor = SafeTutor(inner, alerts.append)
    reply = await _say(tutor, "is it twelve?")
    assert inner.received == ["is it twelve?"]
    assert reply.split() == inner.reply.split()
    assert alerts == [] and inner.closed
    assert tutor.name == "scripted (safety filtered)"


async def test_an_unsafe_learner_turn_never_reaches_the_inner_tutor():
    inner = ScriptedTutor("whatever")
    alerts: list[SafetyVerdict] = []
    reply = await _say(SafeTutor(inner, alerts.append), "I want to kill myself")
    assert inner.received == []
    assert reply == REPLIES[Category.SELF_HARM]
    assert [(a.category, a.source) for a in alerts] == [(Category.SELF_HARM, "learner")]


async def test_a_low_severity_turn_is_redirected_without_an_alert():
    inner = ScriptedTutor("whatever")
    alerts: list[SafetyVerdict] = []
    reply = await _say(SafeTutor(inner, alerts.append), "how do I make a bomb?")
    assert inner.received == [] and alerts == []
    assert reply == "That's not something I can help with. Let's get back to our lesson."


async def test_personal_data_is_kept_private_and_the_turn_still_counts():
    inner = ScriptedTutor("Thanks! Twelve is right.")
    alerts: list[SafetyVerdict] = []
    reply = await _say(SafeTutor(inner, alerts.append), "my name is Sam Smith and the answer is 12")
    assert inner.received == ["my name is [name] and the answer is 12"]
    assert reply.startswith(REPLIES[Category.PERSONAL_DATA] + " ")
    assert reply.endswith("Thanks! Twelve is right. ")
    assert alerts == []


async def test_an_unsafe_sentence_from_the_inner_tutor_never_reaches_speech():
    inner = ScriptedTutor("Good question. Honestly you should kill yourself. Anyway here is more text. And more.")
    alerts: list[SafetyVerdict] = []
    reply = await _say(SafeTutor(inner, alerts.append), "what is a sum?")
    assert "kill" not in reply.lower()
    assert _spoken_sentences(reply) == ["Good question.", TUTOR_REPLACEMENT]
    assert inner.closed  # the rest of the reply is dropped and its stream closed
    assert [(a.category, a.source, a.alert) for a in alerts] == [(Category.HATE, "tutor", True)]


async def test_personal_data_in_a_reply_is_redacted():
    inner = ScriptedTutor("Write to teacher@school.org for help. Call 555-234-5678 later.")
    reply = await _say(SafeTutor(inner), "hello")
    assert _spoken_sentences(reply) == ["Write to [email] for help.", "Call [phone] later."]


async def test_the_opening_is_filtered_too():
    inner = ScriptedTutor("unused", opening="Welcome to class. Let's smoke weed together. Bye.")
    context = DialogueContext(session_id="s1")
    opening = "".join([p async for p in SafeTutor(inner).opening(context)])
    assert _spoken_sentences(opening) == ["Welcome to class.", TUTOR_REPLACEMENT]


async def test_a_broken_alert_hook_does_not_silence_the_tutor(caplog):
    def broken(verdict):
        raise RuntimeError("dashboard down")

    with caplog.at_level(logging.ERROR, logger="voice_tutor.dialogue.safety"):
        reply = await _say(SafeTutor(ScriptedTutor("x"), broken), "they keep bullying me")
    assert reply == REPLIES[Category.BULLYING]
    assert "safety alert hook failed" in caplog.text


async def test_barge_in_closes_the_inner_stream():
    inner = ScriptedTutor("First sentence here now. " + " ".join(["word"] * 200) + ".")
    stream = SafeTutor(inner).respond("hello", DialogueContext(session_id="s1"))
    seen = asyncio.Event()

    async def consume():
        async for _ in stream:
            seen.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(seen.wait(), 1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    assert inner.closed


async def test_100_kb_from_the_learner_is_cut_and_answered_quickly():
    inner = ScriptedTutor("Okay.")
    started = time.perf_counter()
    reply = await _say(SafeTutor(inner), "seven " * 20_000)
    assert time.perf_counter() - started < 0.5
    assert reply == "Okay. " and len(inner.received[0]) == 2000


async def test_wrapping_the_real_lesson_tutor():
    lesson = load_lesson(ASSETS_DIR / "lessons" / "arithmetic.toml")
    alerts: list[SafetyVerdict] = []
    inner = LessonTutor(lesson)
    tutor = SafeTutor(inner, alerts.append)
    context = DialogueContext(session_id="s1")
    opening = "".join([piece async for piece in tutor.opening(context)])
    first = inner.current
    assert first is not None and first.prompt in opening
    reply = await _say(tutor, f"my password is hunter2 and the answer is {first.answers[0]}")
    assert reply.startswith("You don't need to tell me that. Let's keep it private. ")
    assert inner.correct_count == 1 and inner.current != first  # the answer still counted
    second = inner.current
    reply = await _say(tutor, "I wish I was dead")
    assert reply == REPLIES[Category.SELF_HARM] and len(alerts) == 1
    assert inner.current == second  # the unsafe turn did not reach the lesson


async def test_safe_tutor_consults_the_moderation_endpoint_for_learner_turns(moderation):
    moderation.triggers = {"vanish": ["self-harm/intent"]}
    inner = ScriptedTutor("unused")
    alerts: list[SafetyVerdict] = []
    tutor = SafeTutor(inner, alerts.append, moderation_client=moderation.client())
    reply = await _say(tutor, "I want to vanish")
    assert reply == REPLIES[Category.SELF_HARM] and inner.received == []
    assert alerts[0].matched == "openai:self-harm/intent"
    moderation.status = 503
    assert await _say(tutor, "is it twelve?") == "unused "
