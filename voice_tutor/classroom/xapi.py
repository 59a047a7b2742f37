"""xAPI: statements about learning, queued durably in the store and sent to a Learning Record Store.

Statements (xAPI 1.0.3) are built here with a pseudonymous actor (an
``account`` whose name is the learner's random pseudonym, never their name),
a verb from ADL's vocabulary and the lesson or question as the object.
``Store.enqueue_xapi`` gives each its UUID and keeps it in the ``xapi_outbox``
table in the same durable write, so nothing is lost in a crash; the
:class:`XapiSender` posts the outbox in order and marks what the LRS accepted.
A statement posted but not yet marked (a crash in between) is posted again
with the same id, which an LRS treats as the same statement, so the LRS
never holds it twice.

Wiring into a session (beside ``store.recorder.TurnRecorder``)::

    recorder = XapiRecorder(store, learner_name, lesson_id, homepage=xapi_config.homepage)
    await recorder.start()                     # before the first answer: queues "experienced"
    task = asyncio.create_task(recorder.run(session.subscribe()))
    ...
    task.cancel(); await recorder.close()      # drains, then queues "completed"

and one sender per process (``voice-tutor serve``)::

    sender = XapiSender(store, xapi_config)
    sender_task = asyncio.create_task(sender.run())
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

from voice_tutor.classroom.settings import IRI_BASE, XapiConfig
from voice_tutor.events import Event, LessonChanged, MasteryUpdated
from voice_tutor.store import Store

log = logging.getLogger(__name__)

XAPI_VERSION = "1.0.3"
VERBS = {
    "experienced": "http://adlnet.gov/expapi/verbs/experienced",
    "answered": "http://adlnet.gov/expapi/verbs/answered",
    "mastered": "http://adlnet.gov/expapi/verbs/mastered",
    "completed": "http://adlnet.gov/expapi/verbs/completed",
}
ACTIVITY_TYPES = {
    "lesson": "http://adlnet.gov/expapi/activities/lesson",
    "question": "http://adlnet.gov/expapi/activities/cmi.interaction",
    "skill": "http://adlnet.gov/expapi/activities/objective",
}


def activity_iri(lesson_id: str, kind: str | None = None, item: str | None = None) -> str:
    iri = f"{IRI_BASE}/lessons/{quote(lesson_id, safe='')}"
    return iri if kind is None else f"{iri}/{kind}s/{quote(item or '', safe='')}"


def statement(
    verb: str,
    *,
    pseudonym: str,
    homepage: str,
    lesson_id: str,
    kind: str = "lesson",
    item: str | None = None,
    name: str | None = None,
    success: bool | None = None,
    scaled: float | None = None,
    completion: bool | None = None,
    duration_s: float | None = None,
    registration: str | None = None,
    at: datetime | None = None,
) -> dict:
    """One xAPI statement (without ``id``: the outbox gives it one)."""
    obj = {"objectType": "Activity",
           "id": activity_iri(lesson_id) if kind == "lesson" else activity_iri(lesson_id, kind, item),
           "definition": {"type": ACTIVITY_TYPES[kind], "name": {"en-US": name or item or lesson_id}}}
    result: dict = {}
    if success is not None:
        result["success"] = success
    if scaled is not None:
        result["score"] = {"scaled": round(min(max(scaled, -1.0), 1.0), 4)}
    if completion is not None:
        result["completion"] = completion
    if duration_s is not None:
        result["duration"] = f"PT{max(duration_s, 0):.2f}S"
    context: dict = {"platform": "voice-tutor", "language": "en-US"}
    if registration:
        context["registration"] = registration
    if kind != "lesson":
        context["contextActivities"] = {"parent": [{"objectType": "Activity", "id": activity_iri(lesson_id)}]}
    out = {
        "actor": {"objectType": "Agent", "account": {"homePage": homepage, "name": pseudonym}},
        "verb": {"id": VERBS[verb], "display": {"en-US": verb}},
        "object": obj,
        "context": context,
        "timestamp": (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds"),
    }
    if result:
        out["result"] = result
    return out


class XapiRecorder:
    """Queues a session's statements from its event bus: experienced, answered, mastered, completed."""

    def __init__(self, store: Store, learner: str, lesson_id: str, *, homepage: str = IRI_BASE):
        self._store = store
        self._learner = learner
        self._lesson = lesson_id
        self._homepage = homepage
        self._registration = str(uuid.uuid4())
        self._mastered: set[str] = set()
        self._started = time.monotonic()
        self._events: asyncio.Queue[Event] | None = None
        self._pseudonym: str | None = None
        self._cursor = 0

    async def start(self) -> None:
        if self._pseudonym is None:
            self._pseudonym = await asyncio.to_thread(self._store.learner_pseudonym, self._learner)
            rows = await asyncio.to_thread(
                self._store.read,
                "SELECT COALESCE(MAX(assessments.id), 0) FROM assessments"
                " JOIN learners ON learners.id = assessments.learner_id WHERE learners.name = ?",
                (self._learner,),
            )
            self._cursor = rows[0][0]
            self._started = time.monotonic()
            await self._enqueue([self._statement("experienced")])

    async def run(self, events: asyncio.Queue[Event]) -> None:
        """Record until cancelled; then call :meth:`close`."""
        self._events = events
        await self.start()
        while True:
            await self.handle(await events.get())

    async def close(self, *, completed: bool = True) -> None:
        while self._events is not None and not self._events.empty():
            await self.handle(self._events.get_nowait())
        if self._pseudonym is not None:
            await self._enqueue([self._statement(
                "completed", completion=completed, duration_s=time.monotonic() - self._started)])

    async def handle(self, event: Event) -> None:
        try:
            if isinstance(event, MasteryUpdated):
                await self._on_mastery(event)
            elif isinstance(event, LessonChanged) and event.lesson_id != self._lesson:
                await self._change_lesson(event.lesson_id)
        except Exception:  # the lesson goes on; the answer itself is in the store
            log.exception("could not queue an xAPI statement")

    async def _change_lesson(self, lesson_id: str) -> None:
        """The learner switched lessons: the old lesson's attempt ends, the new one's begins."""
        if self._pseudonym is not None:
            await self._enqueue([self._statement(
                "completed", completion=False, duration_s=time.monotonic() - self._started)])
        self._lesson, self._registration, self._mastered = lesson_id, str(uuid.uuid4()), set()
        self._started = time.monotonic()
        if self._pseudonym is not None:
            await self._enqueue([self._statement("experienced")])

    async def _on_mastery(self, event: MasteryUpdated) -> None:
        await self.start()
        key = f"{self._lesson}/{event.skill_id}"
        # The answer this event reports: the oldest stored one of this skill not yet reported (the
        # memory stores each answer before publishing it, and this recorder may lag behind).
        rows = await asyncio.to_thread(
            self._store.read,
            "SELECT assessments.id, question_id FROM assessments JOIN learners ON learners.id = assessments.learner_id"
            " WHERE learners.name = ? AND skill_id = ? AND assessments.id > ? ORDER BY assessments.id LIMIT 1",
            (self._learner, key, self._cursor),
        )
        if rows:
            self._cursor, question = rows[0][0], rows[0][1]
        else:
            question = event.skill_id
        statements = [self._statement("answered", kind="question", item=question, success=event.correct,
                                      scaled=event.p_known)]
        if event.mastered and event.skill_id not in self._mastered:
            self._mastered.add(event.skill_id)
            statements.append(self._statement("mastered", kind="skill", item=event.skill_id,
                                              name=event.skill_name, success=True, scaled=event.p_known))
        await self._enqueue(statements)

    def _statement(self, verb: str, **kwargs) -> dict:
        return statement(verb, pseudonym=self._pseudonym, homepage=self._homepage, lesson_id=self._lesson,
                         registration=self._registration, **kwargs)

    async def _enqueue(self, statements: list[dict]) -> None:
        await asyncio.to_thread(self._store.enqueue_xapi, self._learner, statements)


class LrsError(Exception):
    """The LRS did not take the statements (unreachable, or an error status)."""


class XapiSender:
    """Posts the outbox to the LRS in order, a batch at a time, with Basic auth; backs off while it is down."""

    def __init__(self, store: Store, config: XapiConfig, *, min_backoff_s: float = 0.5, max_backoff_s: float = 60.0):
        if not config.endpoint:
            raise ValueError("[xapi] endpoint is not set")
        self._store = store
        self._config = config
        self._url = config.endpoint.rstrip("/") + "/statements"
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._context = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else None

    def _post(self, statements: list[dict]) -> None:
        headers = {"Content-Type": "application/json", "X-Experience-API-Version": XAPI_VERSION}
        if self._config.username is not None:
            token = f"{self._config.username}:{self._config.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        request = urllib.request.Request(self._url, data=json.dumps(statements).encode("utf-8"),
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._config.timeout_s, context=self._context) as reply:
                reply.read()
        except urllib.error.HTTPError as error:
            if error.code == 409:  # it already holds these ids: delivered before, not marked (crash)
                return
            raise LrsError(f"LRS answered {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            raise LrsError(f"LRS unreachable: {getattr(error, 'reason', error)}") from None

    def send_pending(self) -> int:
        """Send everything queued, oldest first; returns how many were delivered. Raises LrsError and stops at the first failure."""
        sent = 0
        while batch := self._store.pending_xapi(self._config.batch_size):
            ids = [row.id for row in batch]
            try:
                self._post([json.loads(row.statement) for row in batch])
            except LrsError as error:
                self._store.mark_xapi(ids, delivered=False, error=str(error))
                raise
            self._store.mark_xapi(ids, delivered=True)
            sent += len(batch)
        return sent

    def deliver(self, *, deadline_s: float = 30.0) -> int:
        """Blocking: retry with exponential backoff until the outbox is empty or ``deadline_s`` passes."""
        end = time.monotonic() + deadline_s
        backoff, sent = self._min_backoff, 0
        while True:
            try:
                return sent + self.send_pending()
            except LrsError as error:
                if time.monotonic() + backoff > end:
                    raise
                log.warning("xAPI: %s; retrying in %.1f s", error, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def run(self, poll_s: float = 2.0) -> None:
        """Forever (until cancelled): send what is queued, back off while the LRS is down."""
        backoff = self._min_backoff
        while True:
            try:
                await asyncio.to_thread(self.send_pending)
                backoff = self._min_backoff
                await asyncio.sleep(poll_s)
            except LrsError as error:
                log.warning("xAPI: %s; retrying in %.1f s", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
