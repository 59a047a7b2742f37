"""The LLM tutor's tools, and the grounded LLM tutor that calls them.

How the LLM and the offline tutor share one lesson
--------------------------------------------------
The offline :class:`~voice_tutor.dialogue.lesson_tutor.LessonTutor` stays the
one holder of the lesson's progress: which question is being asked, how many
hints it has had.  The LLM works through the questions the planner picks, one
at a time:

* every request's system prompt is rebuilt (``prompts.lesson_system_prompt``)
  with the learner's profile and current mastery, gaps and due reviews, and the
  *current question* in full: the offline tutor's ``current`` or, before the
  first question, the one the planner would ask next.  That planned question
  becomes the offline tutor's current question as soon as the learner hears
  anything of the reply (or a tool needs it), so a greeting that never reached
  the learner does not count as asking;
* when the learner answers, the LLM calls ``record_assessment``: the answer is
  assessed in the learner's memory (BKT, FSRS, written through to the store),
  a :class:`~voice_tutor.events.MasteryUpdated` goes out on the session's bus
  (``DialogueContext.publish``), and the offline tutor moves on to the
  planner's next question, which the tool's result names for the LLM to ask;
* ``give_hint`` hands out the current question's graduated hints in order,
  counted on the offline tutor's attempt, and says when none are left (only
  then may a Socratic question's answer be given).

So if the endpoint fails mid-lesson, :class:`~voice_tutor.dialogue.base.FallbackTutor`'s
offline tutor carries on from the same question with the same hint count.

Tool results reach the learner through one follow-up request
------------------------------------------------------------
``ChatTutor`` hands tool calls over once the reply has finished streaming.  A
model that answers a turn with only a tool call would leave the learner in
silence, and one that speaks before calling cannot know the next question.  So
after a reply with tool calls, :class:`GroundedChatTutor` runs them and sends
the conversation back with the assistant's tool calls and one ``tool`` message
per result (and a freshly built system prompt), and streams that reply too: the
learner hears both parts, in order.  At most ``max_tool_rounds`` replies per
turn may run tools; calls in the reply after that are ignored (logged), which
bounds a model that keeps calling tools.  If the endpoint fails after tools ran
and before anything was said, the learner hears a line built from the results
(then the failure is reported as usual), because the offline tutor has already
moved on and could not answer the turn itself.

Arguments are validated against each tool's JSON schema (types, enums, ranges,
unknown names); a bad call gets ``{"ok": false, "error": ...}`` as its result,
which the model sees in the follow-up, and changes nothing.

Simulations: ``start_simulation`` and ``set_simulation_parameter`` publish a
:class:`~voice_tutor.events.SimulationRequested` on the session's bus, the same
event a lesson rule's ``start_simulation`` action makes the offline tutor publish
(``dialogue.rule_actions``), and the scene runs it.  They are offered only with
a ``scene`` (the models it runs and their parameter ranges, handed in by whoever
shows it) and a lesson with a scene simulation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import openai

from voice_tutor.config import Config, LLMConfig
from voice_tutor.dialogue.answers import check_answer
from voice_tutor.dialogue.base import DialogueContext, DialogueUnavailable, HoldingPhrase
from voice_tutor.dialogue.lesson_tutor import LessonTutor
from voice_tutor.dialogue.llm import OPENING_REQUEST, ChatTutor, ToolCall
from voice_tutor.dialogue.prompts import DEFAULT_MAX_CHARS, MIN_MAX_CHARS, instructions, lesson_system_prompt
from voice_tutor.dialogue.rule_actions import (
    SceneError,
    SceneModels,
    check_scene_parameters,
    set_simulation_parameter,
    start_simulation,
)
from voice_tutor.dialogue.speakable import SpeechFilter
from voice_tutor.learning.lessons import Lesson, Question, Resource
from voice_tutor.learning.mastery import is_mastered
from voice_tutor.learning.memory import LearnerMemory, mastery_event
from voice_tutor.learning.planner import next_question

log = logging.getLogger(__name__)

ToolResult = dict[str, Any]

DEFAULT_MAX_TOOL_ROUNDS = 2
"""Replies per learner turn whose tool calls run (each followed by one more request)."""


class ToolArgumentError(ValueError):
    """A tool call whose arguments do not fit the tool's schema or the lesson."""


# --- schemas and validation ------------------------------------------------------------------


def _function(name: str, description: str, properties: dict[str, dict], required: Sequence[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(required),
                "additionalProperties": False,
            },
        },
    }


_TYPE_NAMES = {"string": "a string", "boolean": "true or false", "integer": "a whole number",
               "number": "a number", "object": "a JSON object"}


def _check_value(where: str, value: Any, spec: dict) -> Any:
    """``value`` checked against the subset of JSON schema the tools use; the value to use."""
    kind = spec.get("type")
    wrong = ToolArgumentError(f"{where} must be {_TYPE_NAMES.get(kind, kind)}, not {json.dumps(value)}")
    if kind == "string":
        if not isinstance(value, str) or not value.strip():
            raise wrong if not isinstance(value, str) else ToolArgumentError(f"{where} must not be empty")
        value = value.strip()
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise wrong
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ):
            raise wrong
        value = int(value)
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise wrong
        value = float(value)
    elif kind == "object":
        if not isinstance(value, dict):
            raise wrong
        items = spec.get("additionalProperties", {})
        value = {str(k): _check_value(f"{where}.{k}", v, items) for k, v in value.items()}
    if "enum" in spec and value not in spec["enum"]:
        raise ToolArgumentError(f"{where} {json.dumps(value)} is not one of: {', '.join(map(str, spec['enum']))}")
    if "minimum" in spec and value < spec["minimum"]:
        raise ToolArgumentError(f"{where} must be at least {spec['minimum']}, not {value}")
    return value


def validate_arguments(schema: dict, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a call to the tool ``schema`` describes, checked; :class:`ToolArgumentError` if not."""
    function = schema["function"]
    parameters = function["parameters"]
    properties = parameters["properties"]
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        raise ToolArgumentError(
            f"{function['name']} has no argument {', '.join(map(repr, unknown))}; "
            f"its arguments are {', '.join(properties)}"
        )
    missing = [name for name in parameters["required"] if name not in arguments]
    if missing:
        raise ToolArgumentError(f"{function['name']} needs {', '.join(missing)}")
    return {name: _check_value(name, value, properties[name]) for name, value in arguments.items()}


def _error(message: str) -> ToolResult:
    return {"ok": False, "error": message}


# --- the question being asked ----------------------------------------------------------------


class QuestionCursor:
    """The question being asked, held by the offline tutor and shared with the LLM.

    Every touch of ``LessonTutor``'s internals (its attempt, ``_ask_next``) is
    here, so the LLM path and the offline path cannot drift apart.
    """

    def __init__(self, offline: LessonTutor):
        self.offline = offline

    @property
    def current(self) -> Question | None:
        return self.offline.current

    @property
    def finished(self) -> bool:
        return self.offline.finished

    def planned(self) -> Question | None:
        """The current question, or before the first one, the one the planner will ask."""
        if self.offline.current is not None or self.offline.finished:
            return self.offline.current
        plan = next_question(self.offline.lesson, self.offline.memory.state)
        return plan.question if plan else None

    def commit(self, learner_name: str) -> Question | None:
        """Make the planned question the one being asked (once the learner has heard it)."""
        if self.offline.current is None and not self.offline.finished:
            self.offline._ask_next(learner_name)
        return self.offline.current

    def advance(self, learner_name: str) -> tuple[Question | None, str | None]:
        """Ask the planner's next question; (question, "review" or "practice"), or (None, None) when done."""
        plan = next_question(self.offline.lesson, self.offline.memory.state)
        self.offline._ask_next(learner_name)
        question = self.offline.current
        if question is None:
            return None, None
        reason = plan.reason if plan is not None and plan.question.id == question.id else "practice"
        return question, reason

    @property
    def hints_given(self) -> int:
        attempt = self.offline._attempt
        return attempt.hints if attempt is not None else 0

    @property
    def wrong_answers(self) -> int:
        attempt = self.offline._attempt
        return attempt.wrong if attempt is not None else 0

    def take_hint(self) -> tuple[str, int] | None:
        """The current question's next hint and its number (from 1), or None when none are left."""
        attempt = self.offline._attempt
        if attempt is None or attempt.hints >= len(attempt.question.hints):
            return None
        attempt.hints += 1
        return attempt.question.hints[attempt.hints - 1], attempt.hints


def _question_brief(question: Question, reason: str | None = None) -> dict[str, Any]:
    brief = {"id": question.id, "skill_id": question.skill, "prompt": question.prompt}
    if reason:
        brief["reason"] = reason
    return brief


# --- the tools ---------------------------------------------------------------------------------


class LessonTools:
    """The tools an LLM tutor may call in one lesson, with real effects on the learner's memory and scene."""

    def __init__(self, lesson: Lesson, memory: LearnerMemory, offline: LessonTutor,
                 *, scene: SceneModels | None = None):
        if offline.lesson is not lesson or offline.memory is not memory:
            raise ValueError("the offline tutor must teach the same lesson from the same learner memory")
        self.lesson = lesson
        self.memory = memory
        self.cursor = QuestionCursor(offline)
        self._offline = offline
        self._scene_models = scene
        self._scene = {r.id: r for r in lesson.resources if r.simulation is not None}
        self._running: dict[str, dict[str, float]] = {}
        self._recommended: set[str] = set()
        self.learner_words = ""
        """What the learner said in the turn being answered: the lesson's checker judges it."""
        self._schemas = {schema["function"]["name"]: schema for schema in self._build_schemas()}
        self._handlers = {
            "record_assessment": self._record_assessment,
            "give_hint": self._give_hint,
            "recommend_resource": self._recommend_resource,
            "start_simulation": self._start_simulation,
            "set_simulation_parameter": self._set_simulation_parameter,
        }

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._schemas)

    def schemas(self) -> list[dict[str, Any]]:
        """The OpenAI ``tools`` list for this lesson."""
        return list(self._schemas.values())

    def _build_schemas(self) -> list[dict]:
        question_ids = [q.id for q in self.lesson.questions]
        skill_ids = [s.id for s in self.lesson.skills]
        question_id = {"type": "string", "enum": question_ids, "description": "The id of the question being asked now."}
        schemas = [
            _function(
                "record_assessment",
                "Record the learner's answer to the question being asked, once, when it is resolved: they gave an "
                "accepted answer, or could not and you explained it. Updates their mastery and returns the next "
                "question to ask.",
                {
                    "question_id": question_id,
                    "correct": {"type": "boolean", "description": "True if the learner themselves gave an accepted "
                                                                  "answer; false if you had to explain it."},
                    "hints_used": {"type": "integer", "minimum": 0,
                                   "description": "Hints the learner had on this question before answering."},
                    "attempts": {"type": "integer", "minimum": 1,
                                 "description": "Answers the learner gave to this question, the last one included "
                                                "(1 means right, or wrong, at the first try)."},
                },
                ["question_id", "correct"],
            ),
            _function(
                "give_hint",
                "Get the next graduated hint for the question being asked; says when no hints are left.",
                {"question_id": question_id},
                ["question_id"],
            ),
        ]
        if self.lesson.resources:
            schemas.append(_function(
                "recommend_resource",
                "Get a reading, video or simulation from the lesson that helps with a skill, to suggest to the learner.",
                {"skill_id": {"type": "string", "enum": skill_ids, "description": "The skill to help with."}},
                ["skill_id"],
            ))
        if self._scene and self._scene_models is not None:
            simulation = {"type": "string", "enum": sorted(self._scene),
                          "description": "Which of the lesson's scene simulations."}
            schemas += [
                _function(
                    "start_simulation",
                    "Start one of the lesson's simulations in the learner's scene, optionally with some parameters "
                    "changed from the lesson's starting values.",
                    {"simulation": simulation,
                     "parameters": {"type": "object", "additionalProperties": {"type": "number"},
                                    "description": "Parameter name to value, e.g. {\"length\": 4.0}."}},
                    ["simulation"],
                ),
                _function(
                    "set_simulation_parameter",
                    "Change one parameter of a simulation you started, while it runs.",
                    {"simulation": simulation,
                     "name": {"type": "string", "description": "The parameter, e.g. length."},
                     "value": {"type": "number"}},
                    ["simulation", "name", "value"],
                ),
            ]
        return schemas

    async def execute(self, call: ToolCall, context: DialogueContext) -> ToolResult:
        """Run one call; never raises for a bad call or a failed effect: the result says what went wrong."""
        schema = self._schemas.get(call.name)
        if schema is None:
            log.info("tool call to an unknown tool rejected", extra={"tool_outcome": "unknown"})
            return _error(f"unknown tool {call.name!r}; the tools are {', '.join(self.names)}")
        try:
            arguments = validate_arguments(schema, call.arguments)
            result = await self._handlers[call.name](arguments, context)
            log.info("tool call %s ran", call.name, extra={"tool_outcome": "ok"})
            return result
        except ToolArgumentError as error:
            log.info("tool call %s rejected: %s", call.name, error, extra={"tool_outcome": "rejected"})
            return _error(str(error))
        except Exception as error:  # the turn goes on; the model is told
            log.exception("tool %s failed", call.name)
            return _error(f"{call.name} failed: {error}")

    def _asked(self, question_id: str, context: DialogueContext) -> Question:
        current = self.cursor.commit(context.learner_name)
        if current is None:
            raise ToolArgumentError("no question is being asked: the lesson is finished")
        if question_id != current.id:
            raise ToolArgumentError(
                f"question {question_id!r} is not the one being asked; the current question is "
                f"{current.id!r}: {current.prompt}"
            )
        return current

    def _verdict(self, question: Question, claimed: bool) -> bool:
        """Whether the learner gave an accepted answer: the lesson's checker decides where it can.

        The checker judges this turn's words; the model's claim stands only for
        a question with no accepted answers.  A disagreement is logged (ids only).
        """
        if not question.answers:
            return claimed
        checked = check_answer(self.learner_words, question.answers, question.kind, self.lesson.answer_language)
        if checked.correct != claimed:
            log.info("record_assessment: the model said correct=%s for question %s; the lesson's checker says %s",
                     claimed, question.id, checked.correct)
        return checked.correct

    async def _record_assessment(self, arguments: dict[str, Any], context: DialogueContext) -> ToolResult:
        question = self._asked(arguments["question_id"], context)
        answered = self._verdict(question, arguments["correct"])
        hints = max(arguments.get("hints_used", 0), self.cursor.hints_given)
        attempts = max(arguments.get("attempts", 1), self.cursor.wrong_answers + 1)
        # As in the offline tutor: BKT counts an answer as right only at the first try, without hints.
        right_first_time = answered and hints == 0 and attempts == 1
        change = await self.memory.record_answer(
            question, "correct" if answered else "incorrect", hints_used=hints, first_try=attempts == 1,
            response=context.learner_text, turn_key=context.turn_id,
        )
        skill_name = self.lesson.skill(change.skill_id).name
        context.publish(mastery_event(change, context, skill_name))
        if answered:
            self._offline.correct_count += 1
        following, reason = self.cursor.advance(context.learner_name)
        result: ToolResult = {
            "ok": True,
            "recorded": {"question_id": question.id, "answered_correctly": answered,
                         "right_first_time": right_first_time, "hints_used": hints, "attempts": attempts},
            **({} if answered == arguments["correct"] else {
                "note": "The lesson's answer checker judged the learner's words "
                        + ("right" if answered else "not an accepted answer") + "; that verdict was recorded."}),
            "mastery": {"skill_id": change.skill_id, "skill": skill_name,
                        "p_known_before": round(change.before, 3), "p_known": round(change.after, 3),
                        "mastered": change.mastered,
                        "newly_mastered": change.mastered and not is_mastered(change.before)},
            "next_review": change.next_review.isoformat() if change.next_review else None,
            "next_question": _question_brief(following, reason) if following else None,
        }
        if following is None:
            result["lesson_finished"] = True
            result["wrap_up"] = self.lesson.wrap_up
        return result

    async def _give_hint(self, arguments: dict[str, Any], context: DialogueContext) -> ToolResult:
        question = self._asked(arguments["question_id"], context)
        taken = self.cursor.take_hint()
        if taken is None:
            return {"ok": True, "question_id": question.id, "hint": None, "hints_left": 0,
                    "explanation": question.explanation,
                    "note": "No hints left: you may now explain the answer, then call record_assessment "
                            "with correct=false unless the learner gets it themselves."}
        hint, number = taken
        return {"ok": True, "question_id": question.id, "hint": hint, "hint_number": number,
                "hints_left": len(question.hints) - number}

    async def _recommend_resource(self, arguments: dict[str, Any], context: DialogueContext) -> ToolResult:
        skill_id = arguments["skill_id"]
        resources = self.lesson.resources_for(skill_id)
        if not resources:
            return {"ok": True, "skill_id": skill_id, "resource": None,
                    "note": "This lesson has no resource for that skill."}
        fresh = [r for r in resources if r.id not in self._recommended]
        resource = (fresh or resources)[0]
        self._recommended.add(resource.id)
        result: ToolResult = {"ok": True, "skill_id": skill_id, "resource": _resource_brief(resource)}
        if resource.id in self._scene and "start_simulation" in self._schemas:
            result["note"] = f"Call start_simulation with simulation {resource.id!r} to show it in the scene."
        return result

    def _check_scene(self, model: str, parameters: dict[str, float]) -> None:
        try:
            check_scene_parameters(self._scene_models or {}, model, parameters)
        except SceneError as error:
            raise ToolArgumentError(str(error)) from None

    def _scene_resource(self, name: str) -> Resource:
        resource = self._scene.get(name)
        if resource is None:  # the enum already says so; kept for callers that bypass validation
            raise ToolArgumentError(f"no scene simulation {name!r} in this lesson (it has: {', '.join(self._scene)})")
        return resource

    async def _start_simulation(self, arguments: dict[str, Any], context: DialogueContext) -> ToolResult:
        resource = self._scene_resource(arguments["simulation"])
        request = start_simulation(resource, context.session_id, arguments.get("parameters", {}))
        parameters = request.parameters
        self._check_scene(resource.simulation, parameters)
        context.publish(request)
        self._running[resource.id] = dict(parameters)  # the published request is not changed later
        return {"ok": True, "started": {"simulation": resource.id, "model": resource.simulation,
                                        "parameters": parameters}}

    async def _set_simulation_parameter(self, arguments: dict[str, Any], context: DialogueContext) -> ToolResult:
        resource = self._scene_resource(arguments["simulation"])
        if resource.id not in self._running:
            raise ToolArgumentError(f"simulation {resource.id!r} is not running; call start_simulation first")
        name, value = arguments["name"], arguments["value"]
        self._check_scene(resource.simulation, {name: value})
        context.publish(set_simulation_parameter(resource, context.session_id, name, value))
        self._running[resource.id][name] = value
        return {"ok": True, "simulation": resource.id, "parameters": dict(self._running[resource.id])}


def _resource_brief(resource: Resource) -> dict[str, Any]:
    brief: dict[str, Any] = {"id": resource.id, "kind": resource.kind, "title": resource.title}
    if resource.url:
        brief["url"] = resource.url
    if resource.simulation:
        brief["simulation"] = resource.simulation
        brief["parameters"] = dict(resource.parameters)
    return brief


def spoken_results(results: Sequence[tuple[ToolCall, ToolResult]], lesson: Lesson) -> str:
    """What to say about tool results when the model cannot say it (the endpoint failed after the tools ran)."""
    parts: list[str] = []
    for call, result in results:
        if not result.get("ok"):
            continue
        if call.name == "record_assessment":
            recorded = result["recorded"]
            if recorded["answered_correctly"]:
                parts.append("That's right!")
            else:
                question = next(q for q in lesson.questions if q.id == recorded["question_id"])
                parts.append(question.explanation)
            following = result.get("next_question")
            parts.append(f"Next question. {following['prompt']}" if following else lesson.wrap_up)
        elif call.name == "give_hint" and result.get("hint"):
            parts.append(f"Here's a hint: {result['hint']}")
        elif call.name == "recommend_resource" and result.get("resource"):
            parts.append(f"You could try \"{result['resource']['title']}\".")
        elif call.name == "start_simulation":
            parts.append("I've started the simulation for you.")
    return " ".join(parts)


# --- the grounded LLM tutor --------------------------------------------------------------------


class GroundedChatTutor(ChatTutor):
    """A :class:`ChatTutor` grounded in the lesson and the learner, whose tools take effect.

    The system prompt is rebuilt for every request from the learner's memory
    and the offline tutor's current question; tool calls run through
    ``on_tool_call`` with the turn's :class:`DialogueContext`, and a reply that
    called tools is followed by one request carrying their results (see the
    module's docstring).
    """

    def __init__(
        self,
        config: LLMConfig,
        lesson: Lesson,
        memory: LearnerMemory,
        offline: LessonTutor,
        *,
        scene: SceneModels | None = None,
        client: openai.AsyncOpenAI | None = None,
        history_turns: int = 8,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        prompt_max_chars: int = DEFAULT_MAX_CHARS,
        context_tokens: int | None = None,
    ):
        if max_tool_rounds < 1:
            raise ValueError(f"max_tool_rounds must be at least 1, not {max_tool_rounds}")
        self.lesson = lesson
        self.memory = memory
        self.toolbox = LessonTools(lesson, memory, offline, scene=scene)
        self.cursor = self.toolbox.cursor
        self.max_tool_rounds = max_tool_rounds
        self.prompt_max_chars = prompt_max_chars
        self._context: DialogueContext | None = None
        self._round: list[tuple[ToolCall, ToolResult]] | None = None
        self._run_tools = True
        super().__init__(
            config,
            lesson_system_prompt(lesson, memory, tools=(), max_chars=prompt_max_chars),
            client=client,
            history_turns=history_turns,
            tools=self.toolbox.schemas(),
            on_tool_call=self._on_tool_call,
            context_tokens=context_tokens,
        )

    def grounding(self, context: DialogueContext, max_chars: int | None = None) -> str:
        """The system prompt for a request made now, in at most ``max_chars`` (and ``prompt_max_chars``)."""
        limit = self.prompt_max_chars if max_chars is None else max(MIN_MAX_CHARS, min(max_chars, self.prompt_max_chars))
        return lesson_system_prompt(
            self.lesson, self.memory,
            current=self.cursor.planned(), finished=self.cursor.finished,
            learner_name=context.learner_name, tools=self.toolbox.names, max_chars=limit,
        )

    def system_prompt_for(self, context: DialogueContext, max_chars: int) -> str:
        self.system_prompt = self.grounding(context, max_chars)
        return self.system_prompt

    def speech_filter(self) -> SpeechFilter:
        """Drops echoes of the rules (not of the lesson, whose questions the tutor must say) and internal names."""
        return SpeechFilter(
            instructions(self.toolbox.names),
            internal_names=[*self.toolbox.names, "question_id", "skill_id", "p_known", "hints_used"],
            max_chars=self.config.max_spoken_chars,
        )

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        async for piece in self._converse(context, OPENING_REQUEST.format(name=context.learner_name), learner_words=""):
            yield piece

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        async for piece in self._converse(context, learner_text, learner_words=learner_text):
            yield piece

    async def _converse(self, context: DialogueContext, user_text: str, *, learner_words: str) -> AsyncIterator[str]:
        self._context = context
        self.toolbox.learner_words = learner_words
        speech = self.speech_filter()  # one per turn: the length cap spans the follow-ups
        exchanged: list[dict[str, Any]] = []  # this turn's tool calls and results, for the follow-up
        ran: list[tuple[ToolCall, ToolResult]] = []
        said = False
        last = ""
        for round_number in range(self.max_tool_rounds + 1):
            calls: list[tuple[ToolCall, ToolResult]] = []
            self._round, self._run_tools = calls, round_number < self.max_tool_rounds
            text: list[str] = []
            try:
                follow_up = list(exchanged)
                async for piece in self._stream(lambda: self.messages(context, user_text, follow_up), speech,
                                                required=not ran):
                    if isinstance(piece, HoldingPhrase):
                        yield piece
                        continue
                    if not text and said and not (piece[:1].isspace() or last[-1:].isspace()):
                        yield " "  # the follow-up continues what the learner heard
                    if not said:
                        said = True
                        self.cursor.commit(context.learner_name)
                    text.append(piece)
                    last = piece
                    yield piece
            except DialogueUnavailable:
                if ran and not said:
                    # The tools took effect and the offline tutor moved on: say so, then report the failure.
                    summary = spoken_results(ran, self.lesson)
                    if summary:
                        said = True
                        yield summary
                raise
            finally:
                self._round = None
            if not calls:
                break
            ran += calls
            exchanged.append({
                "role": "assistant",
                "content": "".join(text).strip(),  # "", never null: llama-cpp-python rejects null content
                "tool_calls": [
                    {"id": call.id, "type": "function",
                     "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
                    for call, _ in calls
                ],
            })
            exchanged += [{"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
                          for call, result in calls]
        if not said:  # tools ran but the follow-up said nothing speakable: say what they did
            summary = spoken_results(ran, self.lesson)
            if not summary:
                question = self.cursor.commit(context.learner_name)
                summary = question.prompt if question is not None else self.lesson.wrap_up
            yield summary

    async def _on_tool_call(self, call: ToolCall) -> None:
        calls, context = self._round, self._context
        if calls is None or context is None:
            return
        if not self._run_tools:
            log.warning("ignored tool call %s: more than %d replies with tool calls in one turn",
                        call.name, self.max_tool_rounds)
            return
        # Shielded: a barge-in during a tool must not leave it half done (assessed but not moved on).
        result = await asyncio.shield(self.toolbox.execute(call, context))
        calls.append((call, result))


def build_llm_tutor(
    config: Config,
    lesson: Lesson,
    memory: LearnerMemory,
    offline: LessonTutor,
    *,
    scene: SceneModels | None = None,
    context_tokens: int | None = None,
) -> GroundedChatTutor:
    """The LLM tutor of ``config.llm``, grounded in ``lesson`` and ``memory``, sharing ``offline``'s progress.

    Wrap it in ``FallbackTutor(..., offline, ...)``: the offline tutor must be
    the same object, so a failing endpoint hands over the same question.
    ``scene`` names the simulations the learner's scene runs; without it the
    simulation tools are not offered.
    """
    return GroundedChatTutor(config.llm, lesson, memory, offline, scene=scene, context_tokens=context_tokens)
