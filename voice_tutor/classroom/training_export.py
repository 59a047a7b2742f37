"""Conversations as OpenAI chat fine-tuning JSONL, from rated sessions, with personal data removed.

One line per session::

    {"messages": [{"role": "system", "content": "..."},
                  {"role": "assistant", "content": "Hello! What is seven plus five?", "weight": 0},
                  {"role": "user", "content": "twelve"},
                  {"role": "assistant", "content": "Yes, well done! ...", "weight": 1}]}

A tutor turn's score is the sum of its ratings (+1 up, -1 down; unrated: 0).
Assistant messages scoring at least ``min_rating`` are trained on
(``weight: 1``), the others are kept as context (``weight: 0``); a session
with no qualifying tutor turn is left out, and the conversation ends at its
last qualifying turn.  Every text passes ``privacy.scrub`` (the safety
filter's redaction, and every learner and teacher name replaced by ``[name]``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from voice_tutor.classroom.privacy import known_names, scrub
from voice_tutor.store import Store

SYSTEM_PROMPT = (
    "You are a patient, encouraging spoken tutor for the lesson '{lesson}'. Ask one question at a time, "
    "give graduated hints before explanations, and keep replies short enough to be spoken aloud."
)


def conversations(store: Store, min_rating: int) -> Iterator[dict]:
    names = known_names(store)
    sessions = store.read("SELECT id, lesson_id FROM sessions ORDER BY started_at, id")
    for session_id, lesson in sessions:
        rows = store.read(
            "SELECT turns.role, turns.text, COALESCE(SUM(ratings.rating), 0), COUNT(ratings.id) FROM turns"
            " LEFT JOIN ratings ON ratings.turn_id = turns.id WHERE turns.session_id = ?"
            " GROUP BY turns.id ORDER BY turns.idx",
            (session_id,),
        )
        messages = [{"role": "system", "content": SYSTEM_PROMPT.format(lesson=lesson)}]
        last_good = None
        for role, text, score, _count in rows:
            content = scrub(text, names)
            if role == "learner":
                if messages[-1]["role"] == "user":  # two learner turns in a row: one message
                    messages[-1]["content"] += " " + content
                else:
                    messages.append({"role": "user", "content": content})
                continue
            good = score >= min_rating
            if messages[-1]["role"] == "assistant":
                messages.append({"role": "user", "content": "(silence)"})
            messages.append({"role": "assistant", "content": content, "weight": int(good)})
            if good:
                last_good = len(messages)
        if last_good is not None:
            yield {"messages": messages[:last_good]}


def export_training(store: Store, out: TextIO | Path, min_rating: int = 1) -> int:
    """Write the JSONL; returns how many conversations were written."""
    count = 0
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8") as handle:
            return export_training(store, handle, min_rating)
    for conversation in conversations(store, min_rating):
        out.write(json.dumps(conversation, ensure_ascii=False) + "\n")
        count += 1
    return count
