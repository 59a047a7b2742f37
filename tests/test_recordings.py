"""Recordings by consent: real speech through a real room's session, WAV files linked to stored turns.

With ``[privacy] record_audio`` each spoken turn of a remembered learner is a
WAV file that plays back their words (transcribed again by the real model),
the tutor says so first and the room gets a ``recording`` notice; a rating
said aloud ("thumbs up") lands on the reply before it.  Retention and
deleting the learner remove the files; export lists them.  Without the
setting nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile

from test_voice_room import Client, is_, silence
from voice_tutor.classroom.privacy import purge
from voice_tutor.config import Config, PrivacyConfig
from voice_tutor.dialogue.feedback import ACKNOWLEDGEMENTS
from voice_tutor.store import Store, StoreError
from voice_tutor.store.recordings import NOTICE, recordings_dir, write_recording
from voice_tutor.store.schema import MIGRATIONS
from voice_tutor.tutoring import RECORDING_NOTICE
from xr_bridge import protocol as p
from xr_bridge.server import BridgeServer
from xr_bridge.voice import voice_session_factory

SECRET = b"recordings-test-secret-0123456789"


def tone(seconds: float = 0.5) -> np.ndarray:
    return (0.2 * np.sin(np.linspace(0, 2 * np.pi * 440 * seconds, int(16000 * seconds)))).astype(np.float32)


def learner_with_recording(store: Store, name: str, folder: Path, at: datetime) -> tuple[int, Path]:
    store.ensure_learner(name, at=at)
    session = store.start_session(name, "arithmetic", at=at)
    store.add_turn(session, "tutor", "What is seven plus five?", ended_at=at)
    path = write_recording(folder / f"session-{session}" / "turn-1.wav", tone())
    store.add_turn(session, "learner", "twelve", ended_at=at, audio_path=path)
    return session, path


def test_the_recordings_folder_is_configured_or_beside_the_database(tmp_path):
    assert recordings_dir(None, tmp_path / "db" / "tutor.db") == (tmp_path / "db" / "recordings").resolve()
    assert recordings_dir(tmp_path / "rec", tmp_path / "tutor.db") == (tmp_path / "rec").resolve()
    assert RECORDING_NOTICE == p.RECORDING


def test_a_version_2_database_gains_the_recording_link(tmp_path):
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    for script in MIGRATIONS[:2]:
        raw.executescript(script)
    raw.execute("PRAGMA user_version = 2")
    raw.execute("INSERT INTO learners VALUES (1, 'Ada', 'beginner', '{}', '[]', '2026-01-01T00:00:00.000000+00:00')")
    raw.execute("INSERT INTO sessions VALUES (1, 1, 'arithmetic', '2026-01-01T00:00:00.000000+00:00', NULL)")
    raw.execute("INSERT INTO turns VALUES (1, 1, 0, 'learner', 'twelve', NULL, 0,"
                " '2026-01-01T00:00:00.000000+00:00', '2026-01-01T00:00:00.000000+00:00', '{}')")
    raw.commit()
    raw.close()
    with Store.open(path) as store:
        (turn,) = store.session_turns(1)
        assert turn.text == "twelve" and turn.audio_path is None
        assert store.export_learner("Ada")["recordings"] == []


def test_retention_and_deletion_remove_the_recordings_and_export_lists_them(tmp_path, run_cli):
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    folder = tmp_path / "recordings"
    db = tmp_path / "tutor.db"
    with Store.open(db) as store:
        _, old = learner_with_recording(store, "Ada", folder, t0)
        _, recent = learner_with_recording(store, "Ada", folder, t0 + timedelta(days=40))
        _, bens = learner_with_recording(store, "Ben", folder, t0 + timedelta(days=40))
        assert store.export_learner("Ada")["recordings"] == [str(old.resolve()), str(recent.resolve())]
        turns = [t for s in store.export_learner("Ada")["sessions"] for t in s["turns"] if t["role"] == "learner"]
        assert [t["audio_path"] for t in turns] == [str(old.resolve()), str(recent.resolve())]

        assert purge(store, 30, now=t0 + timedelta(days=41)) == 2  # the old session's two turns
        assert not old.exists() and not old.parent.exists()  # the session's folder goes with its last file
        assert recent.is_file() and bens.is_file()
        assert store.export_learner("Ada")["recordings"] == [str(recent.resolve())]

        recent.unlink()  # a file already gone does not stop the deletion
        assert store.delete_learner("Ada") == [str(recent.resolve())]
        assert bens.is_file()

    exported = run_cli("learner", "export", "Ben", "--db", db)
    assert json.loads(exported.stdout)["recordings"] == [str(bens.resolve())]
    deleted = run_cli("learner", "delete", "Ben", "--db", db, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted learner 'Ben' (1 sessions, 1 recordings)" in deleted.stderr
    assert not bens.exists() and list(folder.rglob("*")) == []


def test_a_recording_that_cannot_be_deleted_keeps_the_learner(tmp_path):
    folder = tmp_path / "recordings"
    with Store.open(tmp_path / "tutor.db") as store:
        _, path = learner_with_recording(store, "Ada", folder, datetime(2026, 1, 5, tzinfo=UTC))
        path.unlink()
        path.mkdir()  # a folder where the file was: unlink fails
        (path / "x").write_text("x")
        with pytest.raises(StoreError, match="could not delete 1 recordings"):
            store.delete_learner("Ada")
        assert store.get_learner("Ada").name == "Ada"  # nothing else was deleted: retry once fixed


# --- a real room: spoken turns, recorded or not -------------------------------------------------------


async def spoken_session(speech_models, say, config: Config, db: Path, *lines: str) -> list:
    """Ada joins a room of a server remembering learners in ``db`` and says ``lines``, one per tutor reply."""
    store = Store.open(db)
    try:
        factory = voice_session_factory(speech_models, config, store=store)
        async with BridgeServer(SECRET, port=0, session_factory=factory) as server:
            ada = await Client.join(server, "room", "learner", "Ada")
            await ada.wait_for(is_(p.TutorSpeechEnded, turn_id=0), timeout=30)
            for line in lines:
                replies = len(ada.of(p.TurnCompleted))
                await ada.speak(np.concatenate([say(line), silence(1.2)]))
                await ada.wait_for(lambda m: isinstance(m, p.TurnCompleted) and len(ada.of(p.TurnCompleted)) > replies,
                                   timeout=30)
            await ada.close()
            received = list(ada.received)
    finally:
        store.close()  # the server closed the room first: its recorder has stored everything
    return received


@pytest.mark.slow
async def test_recorded_turns_play_back_the_learners_words_and_a_thumbs_up_rates_the_reply_before(
    speech_models, say, tmp_path
):
    folder = tmp_path / "recordings"
    config = dataclasses.replace(Config(), privacy=PrivacyConfig(record_audio=True, recordings_dir=folder))
    db = tmp_path / "tutor.db"
    received = await spoken_session(speech_models, say, config, db, "Twelve.", "Thumbs up!")

    # Told twice: aloud, before anything else, and on the page.
    notices = [m for m in received if isinstance(m, p.Notice) and m.level == p.RECORDING]
    assert notices and notices[0].message == NOTICE
    opening = next(m for m in received if isinstance(m, p.TutorSpeechEnded) and m.turn_id == 0)
    assert opening.text.startswith(NOTICE)

    with Store.open(db) as store:
        export = store.export_learner("Ada")
    (session,) = export["sessions"]
    learner_turns = [t for t in session["turns"] if t["role"] == "learner"]
    assert [bool(re.search(r"twelve|12", t["text"], re.I)) for t in learner_turns] == [True, False]
    assert re.search(r"thumbs? up", learner_turns[1]["text"], re.I)
    paths = [Path(t["audio_path"]) for t in learner_turns]
    assert export["recordings"] == [str(path) for path in paths]
    assert all(path.is_file() and path.is_relative_to(folder.resolve()) for path in paths)
    assert "Ada" not in str(paths[0])  # ids only in file names

    # The file is the learner's words: the real model hears them again.
    samples, rate = soundfile.read(paths[0], dtype="float32")
    assert rate == 16000 and soundfile.info(paths[0]).subtype == "PCM_16"
    heard = speech_models.recognizer.transcribe(samples).text
    assert re.search(r"twelve|12", heard, re.I), heard

    # "Thumbs up!" rated the reply to "twelve", was acknowledged, and was not taken for an answer.
    tutor_turns = [t for t in session["turns"] if t["role"] == "tutor"]
    reply = next(t for t in tutor_turns if "next question" in t["text"].lower())
    assert [r["rating"] for r in reply["ratings"]] == [1]
    assert tutor_turns[-1]["text"] == ACKNOWLEDGEMENTS[1]
    assert sum(len(t["ratings"]) for t in session["turns"]) == 1
    assert len(export["assessments"]) == 1

    with Store.open(db) as store:
        store.delete_learner("Ada")
    assert not any(path.exists() for path in paths)


@pytest.mark.slow
async def test_nothing_is_recorded_unless_enabled(speech_models, say, tmp_path):
    db = tmp_path / "tutor.db"
    received = await spoken_session(speech_models, say, Config(), db, "Twelve.")
    assert not [m for m in received if isinstance(m, p.Notice) and m.level == p.RECORDING]
    with Store.open(db) as store:
        export = store.export_learner("Ada")
    learner_turns = [t for s in export["sessions"] for t in s["turns"] if t["role"] == "learner"]
    assert learner_turns and all(t["audio_path"] is None for t in learner_turns)
    assert export["recordings"] == []
    assert not (tmp_path / "recordings").exists()
    assert [p_.name for p_ in tmp_path.iterdir() if p_.suffix == ".wav"] == []
