"""Progress and interaction analytics computed from the store, as plain rows.

Every function takes the store and the learners in scope (names) and returns
lists of dicts (one table each), which ``reports`` turns into CSV, plots,
HTML and PDF.  Skill ids are the store's ``lesson/skill`` keys.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from voice_tutor.learning.mastery import DEFAULT_PARAMS, MASTERY_THRESHOLD, fit_params, update
from voice_tutor.store import LearnerNotFound, Store


def _in(names: Sequence[str]) -> tuple[str, tuple]:
    return "(" + ",".join("?" * len(names)) + ")", tuple(names)


def _lesson_of(skill_key: str) -> str:
    return skill_key.split("/", 1)[0]


def mastery_history(store: Store, learners: Sequence[str]) -> list[dict]:
    """Every assessed answer as the record keeps it, with p_known after it.

    ``correct``: the learner's answer was right (after hints too); ``first_try``
    and ``hints_used`` say how.  ``p_known`` is what the learner model made of
    the answer then; answers stored before the record kept it (nor the verdict:
    then ``correct`` is BKT's right-first-time) are replayed by BKT, with
    fitted parameters where there are enough.
    """
    fitted: dict[str, object] = {}
    history = []
    for name in sorted(set(learners)):
        try:
            answers = store.answers(name)
        except LearnerNotFound:  # deleted since the scope was read: nothing of them to report
            continue
        known: dict[str, float] = {}
        for answer in sorted(answers, key=lambda a: (a.skill_id, a.at, a.id)):
            skill, facts = answer.skill_id, answer.facts
            if skill not in fitted:
                fitted[skill] = fit_params(store.assessment_sequences(skill)) or DEFAULT_PARAMS
            bkt = fitted[skill]
            if facts is not None:
                after = facts.mastery_after
                right, first_try, hints = facts.verdict == "correct", facts.first_try, facts.hints_used
            else:
                right, first_try, hints = answer.right_first_time, None, None
                after = update(known.get(skill, bkt.prior), right, bkt)
            known[skill] = after
            history.append({"learner": name, "skill": skill, "question": answer.question_id, "correct": right,
                            "first_try": first_try, "hints_used": hints,
                            "verdict": facts.verdict if facts else None, "at": answer.at.isoformat(),
                            "p_known": round(after, 4), "mastered": after >= MASTERY_THRESHOLD})
    return history


def _right_first_time(row: dict) -> bool:
    return row["correct"] and row["first_try"] is not False and not row["hints_used"]


def answer_facts(store: Store, learners: Sequence[str]) -> list[dict]:
    """Per learner and skill: how many answers were right, right first time, right after hints; hints used."""
    rows = store.answer_summary(sorted(set(learners)))
    return [{**row, "first_try_rate": round(row["first_try_correct"] / row["answers"], 3)} for row in rows]


def current_mastery(store: Store, learners: Sequence[str]) -> list[dict]:
    if not learners:
        return []
    marks, params = _in(learners)
    rows = store.read(
        "SELECT learners.name, skill_id, p_known, updated_at FROM mastery"
        f" JOIN learners ON learners.id = mastery.learner_id WHERE learners.name IN {marks}"
        " ORDER BY learners.name, skill_id",
        params,
    )
    return [{"learner": n, "skill": s, "p_known": round(p, 4), "mastered": p >= MASTERY_THRESHOLD,
             "updated_at": u} for n, s, p, u in rows]


def knowledge_gaps(store: Store, learners: Sequence[str]) -> list[dict]:
    """Skills practised but not mastered, weakest first, with the learner's accuracy (right answers,
    hints or not), first-try rate (right first time, no hint) and hints used on them."""
    accuracy: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in mastery_history(store, learners):
        accuracy[(row["learner"], row["skill"])].append(row)
    gaps = []
    for row in current_mastery(store, learners):
        if row["mastered"]:
            continue
        answers = accuracy.get((row["learner"], row["skill"]), [])
        gaps.append({"learner": row["learner"], "skill": row["skill"], "p_known": row["p_known"],
                     "answers": len(answers),
                     "accuracy": round(sum(a["correct"] for a in answers) / len(answers), 3) if answers else None,
                     "first_try_rate": round(sum(map(_right_first_time, answers)) / len(answers), 3)
                     if answers else None,
                     "hints_used": sum(a["hints_used"] or 0 for a in answers)})
    return sorted(gaps, key=lambda g: (g["p_known"], g["learner"], g["skill"]))


def time_on_task(store: Store, learners: Sequence[str]) -> list[dict]:
    """Per session: its length from start to its end (or last turn, for a session cut by a crash)."""
    if not learners:
        return []
    marks, params = _in(learners)
    rows = store.read(
        "SELECT learners.name, sessions.id, lesson_id, started_at, ended_at,"
        " (SELECT MAX(ended_at) FROM turns WHERE turns.session_id = sessions.id),"
        " (SELECT COUNT(*) FROM turns WHERE turns.session_id = sessions.id)"
        f" FROM sessions JOIN learners ON learners.id = sessions.learner_id WHERE learners.name IN {marks}"
        " ORDER BY learners.name, started_at",
        params,
    )
    out = []
    for name, session, lesson, started, ended, last_turn, turns in rows:
        end = max(filter(None, (ended, last_turn)), default=started)
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(started)).total_seconds()
        out.append({"learner": name, "session": session, "lesson": lesson, "started_at": started,
                    "minutes": round(max(seconds, 0.0) / 60, 2), "turns": turns})
    return out


def time_on_task_totals(sessions: list[dict]) -> list[dict]:
    totals: dict[str, list[float]] = defaultdict(list)
    for row in sessions:
        totals[row["learner"]].append(row["minutes"])
    return [{"learner": n, "sessions": len(m), "minutes": round(sum(m), 2)} for n, m in sorted(totals.items())]


def reviews_due(store: Store, learners: Sequence[str], now: datetime) -> list[dict]:
    out = []
    for name in learners:
        for entry in store.due_reviews(name, now):
            out.append({"learner": name, "skill": entry.skill_id, "due": entry.due.isoformat()})
    return out


def question_accuracy(store: Store, learners: Sequence[str]) -> list[dict]:
    """Per question: answers, right ones (hints or not), right first time, and the hints they took."""
    counts: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in mastery_history(store, learners):
        counts[(_lesson_of(row["skill"]), row["question"])].append(row)
    return [{"lesson": lesson, "question": q, "attempts": len(c), "correct": sum(r["correct"] for r in c),
             "accuracy": round(sum(r["correct"] for r in c) / len(c), 3),
             "first_try_rate": round(sum(map(_right_first_time, c)) / len(c), 3),
             "hints_used": sum(r["hints_used"] or 0 for r in c)} for (lesson, q), c in sorted(counts.items())]


def turn_latency(store: Store, learners: Sequence[str]) -> list[dict]:
    """The tutor's latency per turn and stage (the turn's ``latency_ms``), in milliseconds."""
    if not learners:
        return []
    marks, params = _in(learners)
    rows = store.read(
        "SELECT learners.name, sessions.lesson_id, turns.session_id, turns.idx, turns.latency_ms FROM turns"
        " JOIN sessions ON sessions.id = turns.session_id JOIN learners ON learners.id = sessions.learner_id"
        f" WHERE turns.role = 'tutor' AND learners.name IN {marks} ORDER BY turns.session_id, turns.idx",
        params,
    )
    out = []
    for name, lesson, session, idx, latency in rows:
        for stage, ms in sorted(json.loads(latency).items()):
            out.append({"learner": name, "lesson": lesson, "session": session, "turn": idx,
                        "stage": stage, "ms": ms})
    return out


_QUESTION = re.compile(r"\?\s*$|^\s*(what|why|how|when|where|who|which|can|could|is|are|do|does|did)\b", re.I)


def _learner_turns(store: Store, learners: Sequence[str]) -> list[tuple]:
    if not learners:
        return []
    marks, params = _in(learners)
    return store.read(
        "SELECT sessions.lesson_id, turns.text FROM turns JOIN sessions ON sessions.id = turns.session_id"
        " JOIN learners ON learners.id = sessions.learner_id"
        f" WHERE turns.role = 'learner' AND learners.name IN {marks} ORDER BY turns.id",
        params,
    )


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def common_questions(store: Store, learners: Sequence[str], top: int = 10) -> list[dict]:
    """What learners asked the tutor, per lesson, most frequent first."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for lesson, text in _learner_turns(store, learners):
        if _QUESTION.search(text):
            counts[lesson][_normal(text)] += 1
    return [{"lesson": lesson, "question": q, "count": n}
            for lesson in sorted(counts) for q, n in counts[lesson].most_common(top)]


def misconceptions(store: Store, learners: Sequence[str], lessons: Mapping[str, object]) -> list[dict]:
    """Learner answers that match a lesson's known misconceptions, per lesson and question."""
    patterns: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for lesson_id, lesson in lessons.items():
        for question in lesson.questions:
            for misconception in question.misconceptions:
                for answer in misconception.answers:
                    patterns[lesson_id].append((_normal(answer), question.id, misconception.feedback))
    counts: Counter = Counter()
    for lesson, text in _learner_turns(store, learners):
        said = _normal(text)
        for answer, question, feedback in patterns.get(lesson, ()):
            if answer and (said == answer or re.search(rf"\b{re.escape(answer)}\b", said)):
                counts[(lesson, question, answer, feedback)] += 1
    return [{"lesson": l, "question": q, "answer": a, "misconception": f, "count": n}
            for (l, q, a, f), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def drop_off(store: Store, learners: Sequence[str], lessons: Mapping[str, object]) -> list[dict]:
    """Where sessions ended early: the last question answered before the end, counted per lesson.

    A session ended early when it answered fewer distinct questions than its
    lesson has (every session counts when the lesson is not known here).
    """
    sessions = time_on_task(store, learners)
    answers = mastery_history(store, learners)
    by_learner: dict[str, list[dict]] = defaultdict(list)
    for row in answers:
        by_learner[row["learner"]].append(row)
    ends = {row[0]: row[1] for row in store.read(
        "SELECT id, COALESCE(ended_at, (SELECT MAX(ended_at) FROM turns WHERE session_id = sessions.id),"
        " started_at) FROM sessions")}
    counts: Counter = Counter()
    for session in sessions:
        end = ends[session["session"]]
        inside = sorted(
            (a for a in by_learner[session["learner"]]
             if _lesson_of(a["skill"]) == session["lesson"] and session["started_at"] <= a["at"] <= end),
            key=lambda a: a["at"],
        )
        lesson = lessons.get(session["lesson"])
        total = len(lesson.questions) if lesson is not None else None
        if total is not None and len({a["question"] for a in inside}) >= total:
            continue
        last = inside[-1]["question"] if inside else "(before the first question)"
        counts[(session["lesson"], last)] += 1
    return [{"lesson": l, "last_question": q, "sessions": n}
            for (l, q), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
