"""What an LLM tutor is told about the lesson and the learner (its grounding).

:func:`lesson_system_prompt` builds the system prompt afresh for every
request, from four parts (most important first; sent as 1, 4, 2, 3, so that
what never changes in a lesson is a prefix servers can cache):

1. how to speak (short, spoken sentences; one question at a time; hints before
   answers) and, when tools are offered, how to use them;
2. the learner: profile (name, level, goals, preferences), BKT mastery per
   skill, knowledge gaps and reviews due now, from the learner's memory;
3. the question being asked now, in full (accepted answers, graduated hints,
   misconceptions, the worked explanation): the planner chooses it, the offline
   tutor holds it, and the LLM works through it (see ``dialogue.tools``);
4. the lesson's content: objectives, skills with prerequisites, every question
   with its answers, hints, misconceptions and explanation, and the resources,
   so the LLM answers the learner's own questions from the lesson.

The prompt is bounded by ``max_chars``: parts 1-3 are small and clipped
field by field; the lesson content gets what is left and is shown in less
detail (explanations and misconceptions go first, then hints) until it fits,
and is cut with a count of what was left out only as a last resort.  The
conversation history is bounded separately (``ChatTutor.history_turns``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from voice_tutor.learning.lessons import Lesson, Question, Resource
from voice_tutor.learning.mastery import MASTERY_THRESHOLD
from voice_tutor.learning.planner import LearnerState, knowledge_gaps

if TYPE_CHECKING:
    from voice_tutor.learning.memory import LearnerMemory

DEFAULT_MAX_CHARS = 16_000
"""About 4,000 tokens: room for a forty-question lesson in full and the learner's state."""
MIN_MAX_CHARS = 2_000
"""Below this even the speaking rules and the current question would not fit."""
FIELD_CHARS = 400
"""A single free-text field (a goal, an explanation) is clipped to this."""
_LIST_ITEMS = 40
"""At most this many skills or goals are listed in the learner part."""
_RULE_ITEMS = 12
"""At most this many lesson rules are shown (the current skill's first), their words clipped to ``_RULE_CHARS``."""
_RULE_CHARS = 240

_TRIGGER_WORDS = {
    "does_not_understand": "says they don't understand",
    "asks_for_answer_twice": "asks for the answer a second time on one question",
    "wrong_twice": "answers wrong twice in a row",
    "off_topic": "talks about something else",
    "upset": "is upset or says they are bad at this",
    "asks_question": "asks a question of their own",
}
_ACTION_WORDS = {
    "explain_with_analogy": "give that analogy, then the next hint",
    "worked_example": "work through the question's explanation step by step (after every hint if Socratic)",
    "give_hint": "call give_hint and say the hint",
    "steer_back": "ask the current question again",
    "encourage": "encourage them, then give the next hint",
    "answer_from_lesson": "answer from the lesson content, then return to the question",
    "recommend_resource": "call recommend_resource for the skill and suggest it",
    "start_simulation": "call start_simulation to start the scene simulation",
}

SPEECH_RULES = (
    "Your words are spoken aloud: answer in one to three short sentences, no lists, no markdown, "
    "no emoji. Ask one question at a time. When the learner is wrong, give the next hint before "
    "revealing an answer. If the learner interrupted you, the assistant message shows only what they "
    "heard; repeat what matters. Answer the learner's own questions from the lesson content below; "
    "if the lesson does not cover it, say honestly that you don't know and return to the question."
)

_PACE = {
    "slow": "slow: say even less per turn, one idea at a time, and check understanding often",
    "normal": "normal",
    "fast": "fast: keep it brisk, skip recaps the learner does not need",
}


def _clip(text: str, limit: int = FIELD_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _listed(items: Sequence[str], limit: int = _LIST_ITEMS) -> str:
    shown = [_clip(item, 120) for item in items[:limit]]
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(shown) + more


def _tool_rules(tools: Collection[str]) -> str:
    rules = []
    if "record_assessment" in tools:
        rules.append(
            "Work through the lesson by asking the CURRENT QUESTION below. When the learner has answered it "
            "(right, possibly after hints or more tries, or not at all so that you explained the answer), call "
            "record_assessment once with its question_id, correct, hints_used and attempts; the result says how "
            "their mastery changed and which question to ask next: ask that one. Never call it for a question "
            "you have not asked, and never invent question ids."
        )
    if "give_hint" in tools:
        rules.append(
            "When the learner is stuck or wrong, call give_hint for the current question to get the next "
            "graduated hint and say it in your own words; for a Socratic question do not give the answer "
            "until give_hint reports that no hints are left."
        )
    if "recommend_resource" in tools:
        rules.append("To suggest further reading, a video or a simulation for a skill, call recommend_resource.")
    if "start_simulation" in tools:
        rules.append(
            "To show a simulation in the learner's scene, call start_simulation, and "
            "set_simulation_parameter to change it while it runs (for example a pendulum's length)."
        )
    return " ".join(rules)


def _rules(lesson: Lesson, current: Question | None, tools: Collection[str]) -> list[str]:
    """The lesson's rules, as promises the tutor must keep: the current skill's first, bounded."""
    skill = current.skill if current is not None else None
    rules = [rule for rule in lesson.rules if rule.skill in (None, skill)]
    rules = [rule for rule in rules if lesson.rule_for(rule.when, skill) is rule][:_RULE_ITEMS]  # the rule that wins
    if not rules:
        return []
    lines = ["LESSON RULES (when the learner does this, say this in your own words and do it):"]
    for rule in rules:
        action = _ACTION_WORDS.get(rule.action or "", "")
        if rule.action == "start_simulation" and "start_simulation" not in tools:
            action = "no scene is shown here, so suggest a simulation resource instead of promising one"
        scope = f" (skill {rule.skill})" if rule.skill else ""
        lines.append(f"- If the learner {_TRIGGER_WORDS[rule.when]}{scope}: say \"{_clip(rule.say, _RULE_CHARS)}\""
                     + (f"; then {action}." if action else "."))
    return lines


def instructions(tools: Collection[str] = ()) -> str:
    """The prompt's rules (how to speak, how to use ``tools``): words the tutor must never say back.

    The speech filter drops a reply sentence that repeats them; the lesson's
    own content is not here, because the tutor must say its questions.
    """
    return " ".join([SPEECH_RULES, _tool_rules(tools), *_PACE.values()])


def _profile(memory: LearnerMemory | None, learner_name: str | None) -> list[str]:
    learner = memory.learner if memory is not None else None
    if learner is None:
        name = f"Name: {_clip(learner_name, 80)}. " if learner_name else ""
        return [f"{name}No stored profile: a learner the tutor does not remember."]
    preferences = learner.preferences
    lines = [
        f"Name: {_clip(learner.name, 80)}. Level: {_clip(learner.level, 120)}.",
        f"Goals: {_listed(list(learner.goals)) or 'none given'}.",
        f"Preferences: pace {_PACE.get(preferences.pace, _clip(preferences.pace, 40))}; "
        f"voice speed {preferences.voice_speed:g}; language {_clip(preferences.language, 20)}.",
    ]
    lines.append("A returning learner." if memory.returning else "A new learner in this lesson.")
    return lines


def _mastery(lesson: Lesson, state: LearnerState) -> list[str]:
    lines = [f"Mastery (estimated probability the learner knows each skill; mastered at {MASTERY_THRESHOLD:g}):"]
    for skill in lesson.skills[:_LIST_ITEMS]:
        if skill.id in state.mastery:
            p_known = state.p_known(skill.id)
            status = "mastered" if state.mastered(skill.id) else "not mastered"
            lines.append(f"- {skill.id} ({_clip(skill.name, 80)}): p_known {p_known:.2f}, {status}")
        else:
            lines.append(f"- {skill.id} ({_clip(skill.name, 80)}): not assessed yet")
    if len(lesson.skills) > _LIST_ITEMS:
        lines.append(f"- (and {len(lesson.skills) - _LIST_ITEMS} more skills)")
    names = {skill.id: skill.name for skill in lesson.skills}
    gaps = knowledge_gaps(lesson, state)
    lines.append("Knowledge gaps (tried, not mastered, weakest first): "
                 + (_listed([f"{g.name} ({state.p_known(g.id):.2f})" for g in gaps]) or "none") + ".")
    due = [names[s] for s in state.due if s in names]
    lines.append("Due for review now: " + (_listed(due) or "nothing") + ".")
    if state.solved:
        solved = [q.id for q in lesson.questions if q.id in state.solved]
        lines.append("Questions already resolved this session: " + _listed(solved) + ".")
    return lines


def _misconceptions(question: Question, limit: int) -> str:
    return " | ".join(
        f"{' / '.join(_clip(a, 60) for a in m.answers)} -> {_clip(m.feedback, limit)}" for m in question.misconceptions
    )


def _current(lesson: Lesson, state: LearnerState | None, current: Question | None, finished: bool) -> list[str]:
    if current is None:
        if finished:
            return ["CURRENT QUESTION: none, every question the planner chose is done. Answer the learner's "
                    f"questions and wrap up: {_clip(lesson.wrap_up)}"]
        return []
    skill = lesson.skill(current.skill) if current.skill else None
    review = state is not None and current.skill in state.due
    socratic = lesson.is_socratic(current)
    lines = [
        "CURRENT QUESTION (ask it, or keep working on it, until it is resolved):",
        f"id {current.id}; skill {skill.id if skill else lesson.id}"
        f"{' (a review: the skill is due)' if review else ''}.",
        f"Prompt: {_clip(current.prompt)}",
        f"Accepted answers ({current.kind}): {', '.join(_clip(a, 80) for a in current.answers)}. "
        "Accept them however speech recognition spells them (numbers as words or digits, small slips).",
    ]
    if current.hints:
        lines.append("Graduated hints, in order: "
                     + " | ".join(f"{n}) {_clip(h)}" for n, h in enumerate(current.hints, 1)))
    if current.misconceptions:
        lines.append(f"Known wrong answers and what to say: {_misconceptions(current, FIELD_CHARS)}")
    lines.append(f"Worked explanation: {_clip(current.explanation)}")
    if socratic:
        lines.append("This question is Socratic: never say the answer before every hint has been given.")
    return lines


def _question_line(question: Question, detail: int) -> str:
    """One question of the catalogue; ``detail`` 3 is everything, 0 the id and prompt only."""
    line = f"- {question.id} [{question.skill}]: {_clip(question.prompt)}"
    if detail == 0:
        return line
    parts = [f"accepted: {', '.join(_clip(a, 80) for a in question.answers)}"]
    if detail >= 2:
        parts.append(f"hints: {' | '.join(_clip(h, 200) for h in question.hints) or 'none'}")
    if detail >= 3:
        if question.misconceptions:
            parts.append(f"misconceptions: {_misconceptions(question, 200)}")
        parts.append(f"explanation: {_clip(question.explanation)}")
    return f"{line} ({'; '.join(parts)})"


def _resource_line(resource: Resource, detail: int) -> str:
    if resource.simulation is not None:
        params = ", ".join(f"{k}={v:g}" for k, v in resource.parameters.items())
        where = f"runs in the scene as simulation {resource.simulation}" + (f" ({params})" if params else "")
    else:
        where = resource.url or ""
    line = f"- {resource.id} ({resource.kind}, for {', '.join(resource.skills)}): {_clip(resource.title, 160)}"
    return f"{line}; {where}" if detail >= 2 else line


def _catalogue(lesson: Lesson, detail: int) -> list[str]:
    lines = ["LESSON CONTENT", "Skills (id: name; description; prerequisites):"]
    for skill in lesson.skills:
        description = f"; {_clip(skill.description, 300 if detail >= 2 else 120)}" if skill.description else ""
        prerequisites = ", ".join(skill.prerequisites) or "none"
        lines.append(f"- {skill.id}: {_clip(skill.name, 80)}{description}; prerequisites: {prerequisites}")
    lines.append("Questions (id [skill]: prompt (accepted answers; hints; misconceptions; explanation)):")
    lines += [_question_line(question, detail) for question in lesson.questions]
    if lesson.resources:
        lines.append("Resources:")
        lines += [_resource_line(resource, detail) for resource in lesson.resources]
    return lines


def _fit(lines: list[str], budget: int) -> str:
    """The first lines that fit in ``budget`` characters, and a count of those left out."""
    kept, used = [], 0
    for number, line in enumerate(lines):
        note = f"(… {len(lines) - number} more lines of the lesson left out to keep this prompt short)"
        if used + len(line) + 1 + len(note) > budget:  # always leave room for the note
            kept.append(note)
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept)[:budget]


def lesson_system_prompt(
    lesson: Lesson,
    memory: LearnerMemory | None = None,
    *,
    current: Question | None = None,
    finished: bool = False,
    learner_name: str | None = None,
    tools: Collection[str] = (),
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """A system prompt that keeps an LLM on the lesson, on this learner, and suited to speech.

    ``memory`` adds the learner's profile and state; ``current`` is the
    question being asked (the offline tutor's ``current``), ``finished`` says
    the planner has nothing left to ask; ``tools`` names the tools offered, so
    the prompt explains only those.  The result is at most ``max_chars``
    characters long.
    """
    if max_chars < MIN_MAX_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_MAX_CHARS}, not {max_chars}")
    state = memory.state if memory is not None else None
    head = [
        f"You are a patient, encouraging voice tutor. Lesson: {_clip(lesson.title, 200)} "
        f"({_clip(lesson.subject, 80)}, {_clip(lesson.level, 80)}).",
        f"Objectives: {_listed(lesson.objectives)}.",
        SPEECH_RULES,
    ]
    if lesson.answer_language != "en":
        head.append(f"The learner answers in the language with ISO code {lesson.answer_language!r}.")
    if lesson.socratic:
        head.append("This lesson is Socratic: on every question, give all the hints before any answer.")
    if tools:
        head.append(_tool_rules(tools))
    now: list[str] = []  # what changes from turn to turn
    if memory is not None or learner_name:
        now += ["LEARNER", *_profile(memory, learner_name)]
    if state is not None:
        now += _mastery(lesson, state)
    current_lines = _current(lesson, state, current, finished)
    if current_lines:
        now += ["", *current_lines]
    rule_lines = _rules(lesson, current, tools)  # the current skill's rules: they change with the question
    if rule_lines:
        now += ["", *rule_lines]
    rules, changing = "\n".join(head), "\n".join(now)
    if len(rules) + len(changing) > max_chars - 200:  # the parts are clipped field by field; a last guard
        changing = changing[: max(0, max_chars - 201 - len(rules))] + "…"
    budget = max_chars - len(rules) - len(changing) - 4
    for detail in (3, 2, 1, 0):
        catalogue = "\n".join(_catalogue(lesson, detail))
        if len(catalogue) <= budget:
            break
    else:
        catalogue = _fit(_catalogue(lesson, 0), budget)
    # What stays the same comes first, so servers that cache a prompt's prefix (llama.cpp, vLLM, OpenAI)
    # reuse the rules and the lesson, and read only the learner's state and the question afresh.
    return "\n\n".join(part for part in (rules, catalogue, changing) if part)
