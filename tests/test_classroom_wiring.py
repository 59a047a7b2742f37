"""A spoken lesson feeds the classroom: redacted transcripts and queued xAPI statements."""

from __future__ import annotations

import json

from voice_tutor.store import Store


def test_a_named_learners_lesson_is_stored_redacted_and_queued_for_the_lrs(run_cli, recording, say, tmp_path):
    config = tmp_path / "tutor.toml"
    config.write_text("[privacy]\nredact_transcripts = true\n")
    db = tmp_path / "tutor.db"
    learner, _ = recording([(0.6, say("My name is Zoe.")), (1.2, say("Twelve."))])
    result = run_cli("talk", "--fast", "--json", "--input", learner, "--output", tmp_path / "tutor.wav",
                     "--name", "Zoe", "--db", db, "--config", config)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["learner"] for line in result.stdout.splitlines()][1].lower().startswith("twelve")

    with Store.open(db) as store:
        texts = [row["text"] for row in store.read("SELECT text FROM turns ORDER BY id")]
        verbs = [json.loads(row["statement"])["verb"]["id"].rsplit("/", 1)[-1]
                 for row in store.read("SELECT statement FROM xapi_outbox ORDER BY id")]
        pseudonym = store.learner_pseudonym("Zoe")
        answered = [json.loads(row["statement"])["result"] for row in store.read("SELECT statement FROM xapi_outbox")
                    if json.loads(row["statement"])["verb"]["id"].endswith("/answered")]
        (answer,) = store.answers("Zoe")
    assert answered[0]["success"] is True and answered[0]["response"].lower().startswith("twelve")
    assert answer.facts.verdict == "correct" and answer.facts.response == answered[0]["response"]
    assert texts and not any("zoe" in text.lower() for text in texts), texts  # the greeting names her too
    assert any("[name]" in text for text in texts)
    # One question answered, the next one asked and left unanswered: the lesson is suspended, not completed.
    assert verbs[0] == "experienced" and "answered" in verbs and verbs[-1] == "suspended", verbs
    outbox = db.read_bytes()
    assert pseudonym and b"Zoe" not in outbox.split(b"xapi_outbox")[-1]  # statements carry the pseudonym only
