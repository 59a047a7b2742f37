"""Privacy: per-learner deletion leaves no trace, transcripts expire, stored transcripts can be redacted."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from voice_tutor.classroom.privacy import TranscriptRedactor, purge, scrub
from voice_tutor.classroom.settings import load_privacy_config
from voice_tutor.classroom.xapi import statement
from voice_tutor.config import ConfigError
from voice_tutor.store import Store

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def seed_learner(store: Store, name: str, email: str, at: datetime) -> dict:
    store.ensure_learner(name, goals=[f"help {name} with sums"], at=at)
    session = store.start_session(name, "arithmetic", at=at)
    store.add_turn(session, "tutor", f"Hello {name}! What is seven plus five?", ended_at=at)
    store.add_turn(session, "learner", f"twelve, and my email is {email}", ended_at=at + timedelta(seconds=9))
    reply = store.add_turn(session, "tutor", "Yes, well done!", ended_at=at + timedelta(seconds=10),
                           latency_ms={"first_audio": 400.0})
    store.add_rating(reply.id, 1, f"{name} liked it", at=at)
    store.add_survey(session, {"helpful": 5, "enjoyed": 4}, f"thanks from {name}", at=at)
    store.record_answer(name, "arithmetic/addition", "add-7-5", True, 0.6, ('{"card": 1}', at), at=at)
    store.end_session(session, at=at + timedelta(minutes=1))
    pseudonym = store.learner_pseudonym(name)
    ids = store.enqueue_xapi(name, [statement(verb, pseudonym=pseudonym, homepage="https://school.example",
                                              lesson_id="arithmetic") for verb in ("experienced", "completed")])
    first = store.read("SELECT id FROM xapi_outbox WHERE statement_id = ?", (ids[0],))[0][0]
    store.mark_xapi([first], delivered=True)
    return {"session": session, "pseudonym": pseudonym, "statement_ids": ids}


def every_value(store: Store) -> list[str]:
    tables = [row[0] for row in store.read("SELECT name FROM sqlite_master WHERE type = 'table'")]
    values = []
    for table in tables:
        for row in store.read(f"SELECT * FROM {table}"):  # noqa: S608 - names from sqlite_master
            values += [str(value) for value in row]
    return values


def test_deleting_a_learner_leaves_no_trace(tmp_path):
    path = tmp_path / "tutor.db"
    with Store.open(path) as store:
        store.create_class("5B", "Ms Rivera")
        zed = seed_learner(store, "Zed Quixworth", "zed.q@example.org", T0)
        amy = seed_learner(store, "Amy Brook", "amy@example.org", T0 + timedelta(hours=1))
        store.add_to_class("5B", ["Zed Quixworth", "Amy Brook"])
        traces = ["Zed Quixworth", "Quixworth", "zed.q@example.org", zed["pseudonym"], *zed["statement_ids"]]
        before = "\n".join(every_value(store))
        assert all(trace in before for trace in traces)
        zed_id = store.get_learner("Zed Quixworth").id

        store.delete_learner("Zed Quixworth")

        after = every_value(store)
        for trace in traces:
            assert not any(trace in value for value in after), trace
        for table, column in (("sessions", "learner_id"), ("assessments", "learner_id"), ("mastery", "learner_id"),
                              ("reviews", "learner_id"), ("class_members", "learner_id"),
                              ("xapi_outbox", "learner_id"), ("pseudonyms", "learner_id")):
            assert store.read(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (zed_id,))[0][0] == 0
        assert store.read("SELECT COUNT(*) FROM surveys")[0][0] == 1
        assert store.read("SELECT COUNT(*) FROM ratings")[0][0] == 1
        assert store.get_class("5B").members == ("Amy Brook",)
        # Amy keeps everything, her queued statements included.
        assert store.learner_pseudonym("Amy Brook") == amy["pseudonym"]
        assert [row.statement_id for row in store.pending_xapi()] == amy["statement_ids"][1:]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("tutor.db"))
    for trace in traces:
        assert trace.encode() not in raw, trace
    assert b"Amy Brook" in raw


def test_purge_deletes_old_transcripts_only(tmp_path):
    with Store.open(tmp_path / "tutor.db") as store:
        old = seed_learner(store, "Old Timer", "old@example.org", T0)
        new = seed_learner(store, "New Comer", "new@example.org", T0 + timedelta(days=300))
        now = T0 + timedelta(days=400)
        assert purge(store, 200, now=now) == 3
        assert store.session_turns(old["session"]) == []
        assert len(store.session_turns(new["session"])) == 3
        assert [tuple(r) for r in store.read("SELECT comment FROM surveys ORDER BY id")] == [(None,), ("thanks from New Comer",)]
        assert store.get_mastery("Old Timer", "arithmetic/addition") == 0.6  # the learner model stays
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"old@example.org" not in raw and b"new@example.org" in raw

    store_path = tmp_path / "cli" / "tutor.db"
    with Store.open(store_path) as store:
        seed_learner(store, "Last Month", "a@example.org", datetime.now(UTC) - timedelta(days=40))
        seed_learner(store, "Yesterday", "b@example.org", datetime.now(UTC) - timedelta(days=1))
    config = tmp_path / "tutor.toml"
    config.write_text(f'[dialogue]\nstore = "{store_path}"\n[privacy]\nretention_days = 30\n')
    cli = [sys.executable, "-m", "voice_tutor.cli", "privacy", "purge", "--config", str(config)]
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    done = subprocess.run([*cli, "--yes"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "deleted 3 turns of sessions older than 30 days"


def test_transcript_redaction_when_configured(tmp_path):
    config = tmp_path / "tutor.toml"
    config.write_text("[privacy]\nredact_transcripts = true\nretention_days = 90\n")
    settings = load_privacy_config(config)
    assert settings.redact_transcripts and settings.retention_days == 90
    config.write_text("[privacy]\nredact_transcripts = \"yes\"\n")
    with pytest.raises(ConfigError, match="redact_transcripts"):
        load_privacy_config(config)

    with Store.open(tmp_path / "tutor.db") as store:
        store.ensure_learner("Maya Lindqvist")
        store.create_class("5B", "Mr Okonkwo")
        redactor = TranscriptRedactor(store, enabled=settings.redact_transcripts)
        said = "I'm Maya, my mum's number is 07700 900123 and Mr Okonkwo's email is t.okonkwo@school.example"
        clean = redactor(said)
        for secret in ("Maya", "07700 900123", "Okonkwo", "t.okonkwo@school.example"):
            assert secret not in clean
        assert "[phone]" in clean and "[email]" in clean
        assert redactor(None) is None
        assert TranscriptRedactor(store, enabled=False)(said) == said
        assert scrub("MAYA said hi to maya", ["Maya"]) == "[name] said hi to [name]"
        # Stored the way the recorder stores a turn: what lands on disk is the redacted text.
        session = store.start_session("Maya Lindqvist", "arithmetic")
        store.add_turn(session, "learner", redactor(said))
        assert json.dumps([t.text for t in store.session_turns(session)]).count("[name]") >= 2


def test_learner_export_includes_classes_surveys_and_statements(tmp_path):
    with Store.open(tmp_path / "tutor.db") as store:
        store.create_class("5B")
        zed = seed_learner(store, "Zed Quixworth", "zed.q@example.org", T0)
        store.add_to_class("5B", ["Zed Quixworth"])
        exported = store.export_learner("Zed Quixworth")
    assert exported["classes"] == ["5B"]
    assert exported["sessions"][0]["surveys"][0]["answers"] == {"helpful": 5, "enjoyed": 4}
    assert exported["xapi"]["pseudonym"] == zed["pseudonym"]
    assert [s["statement"]["id"] for s in exported["xapi"]["statements"]] == zed["statement_ids"]
    assert exported["xapi"]["statements"][0]["delivered_at"] is not None
    assert exported["xapi"]["statements"][1]["delivered_at"] is None
