"""xAPI: statements about learning, queued durably in the store and sent to a Learning Record Store.

Statements (xAPI 1.0.3) are built here with a pseudonymous actor (an
``account`` whose name is the learner's random pseudonym, never their name),
a verb from ADL's vocabulary and the lesson or question as the object.  They
say what the learner record says: an ``answered`` statement carries the
learner's words (``result.response``, redacted as the record is), ``success``
when their answer was right (after hints too), and the hints used, first try,
verdict and mastery before and after as ``result.extensions``; the mastery
estimate is never posed as a score.  A session ends ``completed`` only when
the lesson's completion rule is met, else ``suspended`` (left mid-question,
resumable) or ``terminated`` (cmi5/ADL verbs).  In a session several learners
share, each has a recorder and is their own actor.
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
    task.cancel(); await recorder.close(outcome=memory.outcome())   # drains, then "completed", "suspended"
                                                                     # or "terminated"

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
    "suspended": "http://adlnet.gov/expapi/verbs/suspended",
    "terminated": "http://adlnet.gov/expapi/verbs/terminated",
}
EXTENSIONS = {
    name: f"{IRI_BASE}/extensions/{name}"
    for name in ("hints-used", "first-try", "verdict", "mastery-before", "mastery-after")
}
"""``result.extensions`` keys (IRIs, as the spec requires) for what the record keeps of an answer."""
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
    response: str | None = None,
    completion: bool | None = None,
    duration_s: float | None = None,
    extensions: dict[str, object] | None = None,
    registration: str | None = None,
    at: datetime | None = None,
) -> dict:
    """One xAPI statement (without ``id``: the outbox gives it one).

    ``extensions`` maps names of :data:`EXTENSIONS` to values (None left out).
    """
    obj = {"objectType": "Activity",
           "id": activity_iri(lesson_id) if kind == "lesson" else activity_iri(lesson_id, kind, item),
           "definition": {"type": ACTIVITY_TYPES[kind], "name": {"en-US": name or item or lesson_id}}}
    result: dict = {}
    if success is not None:
        result["success"] = success
    if response is not None:
        result["response"] = response
    if completion is not None:
        result["completion"] = completion
    if duration_s is not None:
        result["duration"] = f"PT{max(duration_s, 0):.2f}S"
    if known := {EXTENSIONS[name]: value for name, value in (extensions or {}).items() if value is not None}:
        result["extensions"] = known
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
    """Queues one learner's statements from a session's bus: experienced, answered, mastered, and how it ended.

    ``speaker`` is the name the session knows the learner by (default: ``learner``);
    answers of other learners sharing the session are theirs, not this actor's.
    """

    def __init__(self, store: Store, learner: str, lesson_id: str, *, homepage: str = IRI_BASE,
                 speaker: str | None = None):
        self._store = store
        self._learner = learner
        self._speaker = speaker or learner
        self._lesson = lesson_id
        self._homepage = homepage
        self._registration = str(uuid.uuid4())
        self._mastered: set[str] = set()
        self._started = time.monotonic()
        self._events: asyncio.Queue[Event] | None = None
        self._pseudonym: str | None = None

    async def start(self) -> None:
        if self._pseudonym is None:
            self._pseudonym = await asyncio.to_thread(self._store.learner_pseudonym, self._learner)
            self._started = time.monotonic()
            await self._enqueue([self._statement("experienced")])

    async def run(self, events: asyncio.Queue[Event]) -> None:
        """Record until cancelled; then call :meth:`close`."""
        self._events = events
        await self.start()
        while True:
            await self.handle(await events.get())

    async def close(self, outcome: str = "terminated") -> None:
        """Queue what is left, then how the session ended: ``completed`` only when the lesson's completion
        rule is met (``LearnerMemory.outcome``), else ``suspended`` or ``terminated``."""
        if outcome not in ("completed", "suspended", "terminated"):
            raise ValueError(f"a session ends completed, suspended or terminated, not {outcome!r}")
        while self._events is not None and not self._events.empty():
            await self.handle(self._events.get_nowait())
        if self._pseudonym is not None:
            await self._enqueue([self._statement(
                outcome, completion=outcome == "completed", duration_s=time.monotonic() - self._started)])

    async def handle(self, event: Event) -> None:
        try:
            if isinstance(event, MasteryUpdated) and event.learner == self._speaker:
                await self._on_mastery(event)
            elif (isinstance(event, LessonChanged) and event.lesson_id != self._lesson
                  and event.learner in (None, self._speaker)):
                await self._change_lesson(event.lesson_id, event.previous_outcome)
        except Exception:  # the lesson goes on; the answer itself is in the store
            log.exception("could not queue an xAPI statement")

    async def _change_lesson(self, lesson_id: str, outcome: str) -> None:
        """The learner switched lessons: the old lesson's attempt ends as it stood, the new one's begins."""
        if self._pseudonym is not None:
            await self._enqueue([self._statement(
                outcome, completion=outcome == "completed", duration_s=time.monotonic() - self._started)])
        self._lesson, self._registration, self._mastered = lesson_id, str(uuid.uuid4()), set()
        self._started = time.monotonic()
        if self._pseudonym is not None:
            await self._enqueue([self._statement("experienced")])

    async def _on_mastery(self, event: MasteryUpdated) -> None:
        await self.start()
        # A tutor that does not give the verdict reports BKT's observation only (right first time).
        success = event.verdict == "correct" if event.verdict else event.correct
        statements = [self._statement(
            "answered", kind="question", item=event.question_id or event.skill_id, success=success,
            response=event.response,
            extensions={"hints-used": event.hints_used, "first-try": event.first_try,
                        "verdict": event.verdict or None, "mastery-before": event.p_before,
                        "mastery-after": event.p_known},
        )]
        if event.mastered and event.skill_id not in self._mastered:
            self._mastered.add(event.skill_id)
            statements.append(self._statement("mastered", kind="skill", item=event.skill_id,
                                              name=event.skill_name, success=True,
                                              extensions={"mastery-after": event.p_known}))
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
