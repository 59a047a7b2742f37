"""The ``voice-tutor`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from voice_tutor import __version__
from xr_bridge.serve import add_serve_command
from voice_tutor.audio.sources import AudioInputError
from voice_tutor.config import Config, ConfigError, load_config, with_overrides
from voice_tutor.dialogue.base import DialogueUnavailable
from voice_tutor.learning.lessons import LessonError
from voice_tutor.speech.bundled import ModelNotFound
from voice_tutor.speech.stt import ModelLoadError

EXPECTED_ERRORS = (AudioInputError, ConfigError, DialogueUnavailable, LessonError, ModelLoadError, ModelNotFound)


def _progress(message: str) -> None:
    print(f"· {message}", file=sys.stderr, flush=True)


def _config(args) -> Config:
    config = load_config(args.config)
    return with_overrides(
        config,
        stt={"model": args.stt_model, "device": args.device, "language": args.language},
        tts={"voice": args.voice},
        llm={"base_url": getattr(args, "llm_url", None), "model": getattr(args, "llm_model", None)},
        dialogue={"lesson": getattr(args, "lesson", None), "learner_name": getattr(args, "name", None),
                  "store": getattr(args, "db", None)},
    )


def cmd_transcribe(args) -> int:
    from voice_tutor.audio.sources import load_audio
    from voice_tutor.speech.stt import SpeechRecognizer

    config = _config(args)
    hotwords = language = None
    if args.lesson:
        from voice_tutor.tutoring import load_configured_lesson

        lesson = load_configured_lesson(config)
        hotwords = " ".join(lesson.vocabulary) or None
        language = args.language or lesson.answer_language
    _progress("loading speech recognizer…")
    recognizer = SpeechRecognizer(config.stt)
    _progress(f"ready: {recognizer.description}")
    failures = 0
    for path in args.files:
        try:
            audio = load_audio(path)
        except AudioInputError as error:
            print(f"voice-tutor: error: {error}", file=sys.stderr)
            failures += 1
            continue
        transcript = recognizer.transcribe(audio, hotwords=hotwords, language=language)
        if args.json:
            print(json.dumps({
                "file": str(path),
                **({"lesson": lesson.id} if args.lesson else {}),
                "text": transcript.text,
                "language": transcript.language,
                "duration_s": round(transcript.duration_s, 3),
                "elapsed_ms": round(transcript.elapsed_ms, 1),
                "real_time_factor": round(transcript.elapsed_ms / 1000 / max(transcript.duration_s, 1e-9), 4),
            }))
        else:
            print(transcript.text)
    return 1 if failures else 0


def cmd_say(args) -> int:
    import soundfile

    from voice_tutor.speech.tts import SpeechSynthesizer

    config = _config(args)
    _progress("loading voice…")
    synthesizer = SpeechSynthesizer(config.tts)
    audio = synthesizer.synthesize(args.text)
    try:
        soundfile.write(args.output, audio, synthesizer.sample_rate, subtype="PCM_16")
    except (OSError, soundfile.LibsndfileError) as error:
        raise AudioInputError(f"cannot write {args.output}: {error}") from error
    _progress(f"wrote {len(audio) / synthesizer.sample_rate:.2f} s of speech to {args.output}")
    return 0


async def _print_live(session, json_mode: bool, compressed_clock: bool = False) -> None:
    """Both sides of the conversation as they happen; ``compressed_clock`` (``--fast``) marks every latency
    as measured on a clock that ran faster than the recording, never comparable with real-time figures."""
    from voice_tutor.events import (
        BargeIn, FinalTranscript, PartialTranscript, SessionNotice, TurnCompleted, TutorFallback, TutorSpeechEnded,
    )

    queue = session.bus.subscribe()
    rewrite = "\r\033[K" if sys.stdout.isatty() else ""
    fallbacks: list[dict[str, str]] = []  # since the last turn: each turn's object says whose answer it was
    while True:
        event = await queue.get()
        if json_mode:
            if isinstance(event, TutorFallback):
                fallbacks.append({"kind": event.kind, "reason": event.reason, "backend": event.backend})
            elif isinstance(event, TurnCompleted):
                print(json.dumps({
                    "turn": event.turn_id, "learner": event.learner, "tutor": event.tutor,
                    "heard": event.heard, "cut": event.cut, "latency_ms": event.latency_ms,
                    "fallbacks": fallbacks,
                    "clock": "compressed" if compressed_clock else "real-time",
                }), flush=True)
                fallbacks = []
            continue
        match event:
            case PartialTranscript():
                if rewrite:
                    print(f"{rewrite}  learner … {event.text}", end="", flush=True)
            case FinalTranscript():
                print(f"{rewrite}  learner: {event.text}", flush=True)
            case BargeIn():
                print("  (learner interrupted the tutor)", flush=True)
            case TutorSpeechEnded() if event.turn_id == 0:
                print(f"  tutor:   {event.heard}{' …' if event.cut else ''}", flush=True)
            case TurnCompleted():
                latency = ", ".join(f"{name} {ms:.0f} ms" for name, ms in event.latency_ms.items())
                latency += "; compressed clock (--fast), not real time" if compressed_clock else ""
                print(f"  tutor:   {event.heard if event.cut else event.tutor}{' … (cut)' if event.cut else ''}")
                print(f"           [{latency}]", flush=True)
            case SessionNotice():
                print(f"  ! {event.message}", flush=True)
            case TutorFallback():
                print(f"  ! the offline tutor answered ({event.kind}): {event.reason}", flush=True)


async def _talk(args, config: Config) -> int:
    from voice_tutor.audio.sinks import SpeakerSink, WavFileSink
    from voice_tutor.audio.sources import FileSource, MicrophoneSource
    from voice_tutor.session import SpeechModels
    from voice_tutor.store import Store
    from voice_tutor.tutoring import Tutoring

    learner = config.dialogue.learner_name
    store = await asyncio.to_thread(Store.open, config.dialogue.store) if learner else None
    try:
        tutoring = await Tutoring.open(config, learner, store)
        source = FileSource(args.input, realtime=not args.fast) if args.input else MicrophoneSource(args.input_device)
        models = await asyncio.to_thread(SpeechModels.load, config, _progress)
        try:
            if args.output:
                sink = WavFileSink(args.output, models.synthesizer.sample_rate, realtime=not args.fast,
                                   timeline_start=(lambda: source.started_at) if args.input else None)
            else:
                sink = SpeakerSink(models.synthesizer.sample_rate, args.output_device)
            if not args.input and not args.output and not args.no_echo_cancellation:
                from voice_tutor.audio.echo import with_echo_cancellation

                source, sink = with_echo_cancellation(source, sink)  # the microphone hears the speaker
            session = tutoring.session(models, source, sink)
            printer = asyncio.create_task(_print_live(session, args.json, compressed_clock=args.fast))
            if not args.json:
                _progress(f"lesson: {tutoring.lesson.title} — tutor: {tutoring.tutor.name}")
                _progress(f"playing {args.input} into the session" if args.input else "listening (Ctrl+C to stop)")
            sender = sending = None
            if store is not None and config.xapi.endpoint:
                from voice_tutor.classroom.xapi import XapiSender

                sender = XapiSender(store, config.xapi)
                sending = asyncio.create_task(sender.run())
            try:
                await tutoring.run(session)
            finally:
                await asyncio.sleep(0)
                printer.cancel()
                if sender:
                    sending.cancel()
                    await _flush_statements(sender)
        finally:
            models.close()
    finally:
        if store:
            store.close()
    return 0


async def _flush_statements(sender) -> None:
    """Deliver the session's last statements; what the LRS does not take stays queued for next time."""
    from voice_tutor.classroom.xapi import LrsError

    try:
        await asyncio.to_thread(sender.deliver, deadline_s=5.0)
    except LrsError as error:
        _progress(f"xAPI statements stay queued: {error}")


def cmd_talk(args) -> int:
    config = _config(args)
    try:
        return asyncio.run(_talk(args, config))
    except KeyboardInterrupt:
        return 130


def cmd_bench(args) -> int:
    from voice_tutor.bench import main as bench_main

    return bench_main(_config(args), args.json, sessions=args.sessions)


# --- learners and lessons ---------------------------------------------------------------------------


def _fail(message: str) -> int:
    print(f"voice-tutor: error: {message}", file=sys.stderr)
    return 2


def _clean_errors(command):
    """Store, lesson, file and value errors end a command with one clear line, never a traceback."""
    import functools
    import sqlite3

    from voice_tutor.store import StoreError

    @functools.wraps(command)
    def run(args) -> int:
        try:
            return command(args)
        except StoreError as error:
            return _fail(str(error))
        except sqlite3.Error as error:
            return _fail(f"{getattr(args, 'db_path', None) or 'the learner database'}: {error}")
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            return _fail(f"{where}{error.strerror or error}")
        except ValueError as error:  # LessonError and ConfigError are ValueErrors too
            return _fail(str(error))

    return run


def _plain_config(args) -> Config:
    return load_config(getattr(args, "config", None))


def _db_path(args) -> Path:
    from voice_tutor.store import default_path

    path = args.db or _plain_config(args).dialogue.store or default_path()
    args.db_path = path
    return path


def _open_store(args, *, create: bool = False):
    """The learner database; reading commands never create one where there is none."""
    from voice_tutor.store import Store, StoreError

    path = _db_path(args)
    if not create and not path.is_file():
        raise StoreError(f"no learner database at {path} (a named learner in `voice-tutor talk --name` creates it)")
    return Store.open(path)


def _when(moment) -> str:
    """A stored time (datetime or ISO text) for people: UTC to the minute."""
    from datetime import UTC, datetime

    if moment is None:
        return "never"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _known_lessons(lessons_dir: Path) -> dict:
    """The valid lessons in ``lessons_dir`` by lesson id (invalid files are skipped here)."""
    from voice_tutor.learning.lessons import LessonError, load_lesson

    lessons = {}
    for path in sorted(lessons_dir.glob("*.toml")) if lessons_dir.is_dir() else []:
        try:
            lesson = load_lesson(path)
        except LessonError:
            continue
        lessons.setdefault(lesson.id, lesson)
    return lessons


@_clean_errors
def cmd_learner_list(args) -> int:
    from voice_tutor.store import Store

    path = _db_path(args)
    if not path.is_file():
        if args.json:
            _print_json([])
        else:
            print(f"no learners yet (no database at {path})", file=sys.stderr)
        return 0
    with Store.open(path) as store:
        learners = store.list_learners()
        activity = store.learner_activity()
    rows = []
    for learner in learners:
        sessions, last_seen = activity.get(learner.name, (0, None))
        rows.append({"name": learner.name, "level": learner.level, "sessions": sessions,
                     "last_seen": last_seen.isoformat() if last_seen else None})
    if args.json:
        _print_json(rows)
    elif not rows:
        print(f"no learners yet in {path}", file=sys.stderr)
    else:
        _table([[r["name"], r["level"], str(r["sessions"]), _when(r["last_seen"])] for r in rows],
               ["NAME", "LEVEL", "SESSIONS", "LAST SEEN"])
    return 0


def _learner_summary(export: dict, lessons: dict, now) -> dict:
    """What `learner show` reports, from the store's export and the known lessons."""
    from datetime import datetime

    from voice_tutor.learning.mastery import MASTERY_THRESHOLD
    from voice_tutor.learning.planner import LearnerState, knowledge_gaps, recommend_resources

    def split(key: str) -> tuple[str, str]:
        lesson_id, _, skill_id = key.partition("/")
        return (lesson_id, skill_id) if skill_id else ("", key)

    def skill_name(lesson_id: str, skill_id: str) -> str | None:
        lesson = lessons.get(lesson_id)
        return next((s.name for s in lesson.skills if s.id == skill_id), None) if lesson else None

    answers: dict[str, list[dict]] = {}
    for assessment in export["assessments"]:
        answers.setdefault(assessment["skill_id"], []).append(assessment)

    def right(answer: dict) -> bool:
        """The learner's answer was right, hints or not (before the record kept verdicts: right first time)."""
        return answer["verdict"] == "correct" if answer["verdict"] else answer["correct"]

    by_lesson: dict[str, dict] = {}
    for row in export["mastery"]:
        lesson_id, skill_id = split(row["skill_id"])
        lesson = lessons.get(lesson_id)
        entry = by_lesson.setdefault(lesson_id, {
            "id": lesson_id, "title": lesson.title if lesson else None, "skills": [], "gaps": [], "resources": [],
        })
        history = answers.get(row["skill_id"], [])
        entry["skills"].append({
            "id": skill_id, "name": skill_name(lesson_id, skill_id), "p_known": row["p_known"],
            "mastered": row["p_known"] >= MASTERY_THRESHOLD, "answers": len(history),
            "correct": sum(map(right, history)),
            "right_first_time": sum(answer["correct"] for answer in history),
            "hints_used": sum(answer["hints_used"] or 0 for answer in history),
            "updated_at": row["updated_at"],
        })
    for lesson_id, entry in by_lesson.items():
        lesson = lessons.get(lesson_id)
        if lesson is not None:
            order = {skill.id: index for index, skill in enumerate(lesson.skills)}
            entry["skills"].sort(key=lambda s: (order.get(s["id"], len(order)), s["id"]))
            state = LearnerState(mastery={s["id"]: s["p_known"] for s in entry["skills"] if s["id"] in order})
            gaps = knowledge_gaps(lesson, state)
            entry["gaps"] = [{"id": g.id, "name": g.name, "p_known": state.p_known(g.id)} for g in gaps]
            entry["resources"] = [{"title": r.title, "kind": r.kind, "url": r.url, "simulation": r.simulation}
                                  for r in recommend_resources(lesson, gaps)]
        else:
            gaps = sorted((s for s in entry["skills"] if not s["mastered"]), key=lambda s: s["p_known"])
            entry["gaps"] = [{"id": s["id"], "name": None, "p_known": s["p_known"]} for s in gaps]
    reviews = []
    for row in sorted(export["reviews"], key=lambda r: (r["due"], r["skill_id"])):
        lesson_id, skill_id = split(row["skill_id"])
        reviews.append({"lesson": lesson_id, "skill": skill_id, "name": skill_name(lesson_id, skill_id),
                        "due": row["due"], "due_now": datetime.fromisoformat(row["due"]) <= now})
    sessions = []
    for session in export["sessions"][-5:][::-1]:
        turns = session["turns"]
        sessions.append({
            "id": session["id"], "lesson": session["lesson_id"], "started_at": session["started_at"],
            "ended_at": session["ended_at"], "outcome": session["outcome"], "turns": len(turns),
            "last_turn_at": turns[-1]["ended_at"] if turns else None,
        })
    recent_answers = []
    for answer in export["assessments"][-10:][::-1]:
        lesson_id, skill_id = split(answer["skill_id"])
        recent_answers.append({
            "at": answer["at"], "lesson": lesson_id, "skill": skill_id, "question": answer["question_id"],
            "verdict": answer["verdict"] or ("correct" if answer["correct"] else None),
            "response": answer["response"], "first_try": answer["first_try"], "hints_used": answer["hints_used"],
            "mastery_before": answer["mastery_before"], "mastery_after": answer["mastery_after"],
            "session_id": answer["session_id"],
        })
    return {
        "learner": export["learner"],
        "sessions_count": len(export["sessions"]),
        "lessons": sorted(by_lesson.values(), key=lambda entry: entry["id"]),
        "reviews": reviews,
        "recent_sessions": sessions,
        "recent_answers": recent_answers,
    }


@_clean_errors
def cmd_learner_show(args) -> int:
    from datetime import UTC, datetime

    with _open_store(args) as store:
        export = store.export_learner(args.name)
    lessons = _known_lessons(_plain_config(args).dialogue.lessons_dir)
    summary = _learner_summary(export, lessons, datetime.now(UTC))
    if args.json:
        _print_json(summary)
        return 0
    learner, prefs = summary["learner"], summary["learner"]["preferences"]
    print(f"{learner['name']}")
    print(f"  level:        {learner['level']}")
    print(f"  preferences:  pace {prefs['pace']}, voice speed {prefs['voice_speed']:g}, language {prefs['language']}")
    print(f"  goals:        {'; '.join(learner['goals']) or '(none)'}")
    print(f"  since:        {_when(learner['created_at'])}")
    print(f"  sessions:     {summary['sessions_count']}")

    def skill_label(name: str | None, skill_id: str) -> str:
        return f"{name} ({skill_id})" if name else skill_id

    print("\nMastery")
    if not summary["lessons"]:
        print("  (nothing assessed yet)")
    for entry in summary["lessons"]:
        print(f"  {entry['id']}" + (f" — {entry['title']}" if entry["title"] else " (lesson not found)"))
        rows = [[skill_label(s["name"], s["id"]), f"{s['p_known']:.3f}", "mastered" if s["mastered"] else "learning",
                 f"{s['correct']}/{s['answers']} right, {s['right_first_time']} right first time, "
                 f"{s['hints_used']} hint{'' if s['hints_used'] == 1 else 's'}"] for s in entry["skills"]]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print("    " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print("\nReviews")
    if not summary["reviews"]:
        print("  (none scheduled)")
    for item in summary["reviews"]:
        status = "due now" if item["due_now"] else "upcoming"
        print(f"  {item['lesson']}: {skill_label(item['name'], item['skill'])}  due {_when(item['due'])}  ({status})")
    print("\nKnowledge gaps")
    gaps = [(entry, gap) for entry in summary["lessons"] for gap in entry["gaps"]]
    if not gaps:
        print("  (none)")
    for entry, gap in gaps:
        print(f"  {entry['id']}: {skill_label(gap['name'], gap['id'])}  p_known {gap['p_known']:.3f}")
    for entry in summary["lessons"]:
        for resource in entry["resources"]:
            where = resource["url"] or f"simulation {resource['simulation']}"
            print(f"    try: {resource['title']} ({resource['kind']}, {where})")
    print("\nRecent answers")
    if not summary["recent_answers"]:
        print("  (none)")
    for answer in summary["recent_answers"]:
        facts = [answer["verdict"] or "?"]
        if answer["first_try"] is not None:
            facts.append("first try" if answer["first_try"] else "after a wrong answer")
        if answer["hints_used"]:
            facts.append(f"{answer['hints_used']} hint" + ("s" if answer["hints_used"] > 1 else ""))
        if answer["mastery_before"] is not None:
            facts.append(f"mastery {answer['mastery_before']:.2f} → {answer['mastery_after']:.2f}")
        said = f'  "{answer["response"]}"' if answer["response"] else ""
        print(f"  {_when(answer['at'])}  {answer['lesson']}: {answer['question']}  {', '.join(facts)}{said}")
    print("\nRecent sessions")
    if not summary["recent_sessions"]:
        print("  (none)")
    for session in summary["recent_sessions"]:
        end = _when(session["ended_at"]) if session["ended_at"] else "no end recorded"
        outcome = f"  {session['outcome']}" if session["outcome"] else ""
        print(f"  #{session['id']}  {session['lesson']}  {_when(session['started_at'])} → {end}  "
              f"{session['turns']} turns{outcome}")
    return 0


@_clean_errors
def cmd_learner_export(args) -> int:
    with _open_store(args) as store:
        export = store.export_learner(args.name)
    text = json.dumps(export, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"· wrote {args.name!r} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


@_clean_errors
def cmd_learner_delete(args) -> int:
    if not args.yes:
        return _fail(f"deleting {args.name!r} removes every session, turn and score of theirs for good; "
                     "add --yes to do it")
    with _open_store(args) as store:
        sessions = len(store.export_learner(args.name)["sessions"])
        recordings = len(store.delete_learner(args.name))
    kept = f", {recordings} recordings" if recordings else ""
    print(f"deleted learner {args.name!r} ({sessions} sessions{kept})", file=sys.stderr)
    return 0


@_clean_errors
def cmd_learner_set(args) -> int:
    import dataclasses
    import re

    from voice_tutor.store import LearnerNotFound, Preferences

    if not args.name.strip():
        return _fail("a learner needs a non-empty name")
    if args.level is not None and not args.level.strip():
        return _fail("--level must not be empty")
    if args.language is not None and not re.fullmatch(r"[a-z]{2}", args.language):
        return _fail(f"--language must be a two-letter ISO 639-1 code such as en or es, not {args.language!r}")
    with _open_store(args, create=True) as store:
        try:
            current = store.get_learner(args.name)
            created = False
        except LearnerNotFound:
            current, created = None, True
        base = current.preferences if current else None
        changes = {key: value for key, value in
                   {"pace": args.pace, "voice_speed": args.voice_speed, "language": args.language}.items()
                   if value is not None}
        preferences = dataclasses.replace(base or Preferences(), **changes)  # validates: ValueError
        if created:
            learner = store.ensure_learner(args.name, level=args.level or "beginner", preferences=preferences,
                                           goals=args.goal or ())
        else:
            learner = store.update_learner(args.name, level=args.level, preferences=preferences, goals=args.goal)
    prefs = learner.preferences
    print(f"{'created' if created else 'updated'} {learner.name}: level {learner.level}, pace {prefs.pace}, "
          f"voice speed {prefs.voice_speed:g}, language {prefs.language}, "
          f"goals: {'; '.join(learner.goals) or '(none)'}")
    return 0


@_clean_errors
def cmd_lessons(args) -> int:
    from voice_tutor.learning.lessons import LessonError, load_lesson

    if args.files:
        paths, in_dir = list(args.files), False
    else:
        lessons_dir = args.dir or _plain_config(args).dialogue.lessons_dir
        if not lessons_dir.is_dir():
            return _fail(f"{lessons_dir}: no such directory")
        paths, in_dir = sorted(lessons_dir.glob("*.toml")), True
        if not paths:
            return _fail(f"{lessons_dir}: no lesson files (*.toml)")
    rows, problems, seen = [], [], {}
    for path in paths:
        try:
            lesson = load_lesson(path)
        except LessonError as error:
            problems.append(str(error))
            rows.append({"file": str(path), "valid": False, "error": str(error)})
            continue
        # `--lesson ID` finds lessons/ID.toml, and progress is stored under the lesson id: they must agree.
        problem = None
        if in_dir and path.stem != lesson.id:
            problem = (f"{path}: id: {lesson.id!r} differs from the file name {path.stem!r}, "
                       f"so `--lesson {lesson.id}` would not find this file")
        elif lesson.id in seen:
            problem = f"{path}: id: {lesson.id!r} is also the id of {seen[lesson.id]}"
        seen.setdefault(lesson.id, path)
        if problem:
            problems.append(problem)
        rows.append({
            "file": str(path), "valid": problem is None, "error": problem, "id": lesson.id, "title": lesson.title,
            "subject": lesson.subject, "level": lesson.level, "skills": len(lesson.skills),
            "questions": len(lesson.questions), "answer_language": lesson.answer_language,
        })
    if in_dir:  # lessons name each other as prerequisites: check those references across the folder
        from voice_tutor.learning.catalogue import Catalogue

        loaded = [load_lesson(Path(r["file"])) for r in rows if r["valid"]]
        for problem in Catalogue.of(loaded).refused:
            lesson_id = problem.split(":", 1)[0]
            for row in rows:
                if row.get("id") == lesson_id and row["valid"]:
                    row["valid"], row["error"] = False, f"{row['file']}: {problem.split(': ', 1)[1]}"
                    problems.append(row["error"])
    if args.json:
        _print_json(rows)
    else:
        valid = [r for r in rows if r["valid"]]
        if valid:
            _table([[r["id"], r["title"], r["subject"], r["level"], str(r["skills"]), str(r["questions"])]
                    for r in valid], ["ID", "TITLE", "SUBJECT", "LEVEL", "SKILLS", "QUESTIONS"])
    for problem in problems:
        print(f"voice-tutor: error: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} of {len(rows)} lessons invalid", file=sys.stderr)
    return 1 if problems else 0


def _store_options(config_sections: str) -> argparse.ArgumentParser:
    """The --db and --config options every command over the learner database takes."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--db", type=Path, metavar="PATH",
                         help="the learner database (default ~/.local/share/voice-tutor/tutor.db)")
    options.add_argument("--config", type=Path, help=f"a TOML configuration file ({config_sections})")
    return options


def _add_learner_commands(commands) -> None:
    store_options = _store_options("its [dialogue] store")

    learner = commands.add_parser("learner", help="list, show, export, delete or set up remembered learners")
    actions = learner.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[store_options], help="every learner: level, sessions, last seen")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_learner_list)

    show = actions.add_parser("show", parents=[store_options],
                              help="profile, mastery per skill, reviews, knowledge gaps, recent sessions")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_learner_show)

    export = actions.add_parser("export", parents=[store_options], help="everything stored about a learner, as JSON")
    export.add_argument("name")
    export.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    export.set_defaults(run=cmd_learner_export)

    delete = actions.add_parser("delete", parents=[store_options], help="forget a learner and all their data")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="really delete (required)")
    delete.set_defaults(run=cmd_learner_delete)

    setting = actions.add_parser("set", parents=[store_options],
                                 help="create a learner or change their profile")
    setting.add_argument("name")
    setting.add_argument("--level", help="e.g. beginner, intermediate, advanced (new learners: beginner)")
    setting.add_argument("--pace", choices=["slow", "normal", "fast"])
    setting.add_argument("--voice-speed", type=float, metavar="X", help="tutor speaking rate, 0.5 to 2.0")
    setting.add_argument("--language", metavar="xx", help="preferred language (ISO 639-1)")
    setting.add_argument("--goal", action="append", metavar="TEXT",
                         help="a learning goal; repeat for several (replaces the learner's goals)")
    setting.set_defaults(run=cmd_learner_set)

    lessons = commands.add_parser("lessons", help="list the lessons and validate them")
    lessons.add_argument("files", nargs="*", type=Path, metavar="FILE", help="lesson files (default: every one in --dir)")
    lessons.add_argument("--dir", type=Path, help="the lessons directory (default: the bundled lessons)")
    lessons.add_argument("--config", type=Path, help="a TOML configuration file (its [dialogue] lessons_dir)")
    lessons.add_argument("--json", action="store_true", help="one JSON list of lessons, valid or not")
    lessons.set_defaults(run=cmd_lessons)


# --- the classroom: classes, reports, training export, privacy ------------------------------------


def _classroom_db(args, *, create: bool = False):
    """The learner database, found like `learner` does, but tolerating [xapi]/[privacy] in --config."""
    from voice_tutor.classroom.settings import store_path
    from voice_tutor.store import Store, StoreError, default_path

    path = args.db or store_path(getattr(args, "config", None)) or default_path()
    args.db_path = path
    if not create and not path.is_file():
        raise StoreError(f"no learner database at {path}")
    return Store.open(path)


@_clean_errors
def cmd_class_create(args) -> int:
    with _classroom_db(args, create=True) as store:
        room = store.create_class(args.name, args.teacher)
    print(f"class {room.name!r} (teacher: {room.teacher or 'none'}, {len(room.members)} learners)", file=sys.stderr)
    return 0


@_clean_errors
def cmd_class_add(args) -> int:
    with _classroom_db(args) as store:
        store.get_class(args.name)  # an unknown class fails before any learner is created
        known = {learner.name for learner in store.list_learners()}
        for name in args.learners:
            if name not in known:
                store.ensure_learner(name)
                print(f"· new learner {name!r}", file=sys.stderr)
        room = store.add_to_class(args.name, args.learners)
    print(f"class {room.name!r}: {', '.join(room.members)}", file=sys.stderr)
    return 0


@_clean_errors
def cmd_class_remove(args) -> int:
    with _classroom_db(args) as store:
        room = store.remove_from_class(args.name, args.learners)
    print(f"class {room.name!r}: {', '.join(room.members) or 'no learners'}", file=sys.stderr)
    return 0


@_clean_errors
def cmd_class_list(args) -> int:
    from voice_tutor.store import StoreError

    try:
        store = _classroom_db(args)
    except StoreError:
        rooms = []
    else:
        with store:
            rooms = store.list_classes()
    rows = [{"name": r.name, "teacher": r.teacher, "learners": list(r.members)} for r in rooms]
    if args.json:
        _print_json(rows)
    elif not rows:
        print("no classes yet (voice-tutor class create NAME)", file=sys.stderr)
    else:
        _table([[r["name"], r["teacher"] or "-", str(len(r["learners"])), ", ".join(r["learners"])] for r in rows],
               ["CLASS", "TEACHER", "LEARNERS", "NAMES"])
    return 0


@_clean_errors
def cmd_report(args) -> int:
    from voice_tutor.classroom.reports import FORMATS, build_report
    from voice_tutor.config import DialogueConfig

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        return _fail(f"--format takes {', '.join(FORMATS)} (comma-separated), not {args.format!r}")
    lessons = _known_lessons(args.lessons_dir or DialogueConfig().lessons_dir)
    out = args.out or Path(f"report-{args.target}")
    with _classroom_db(args) as store:
        report = build_report(store, args.target, out, formats, lessons=lessons)
    for path in report.files:
        print(path)
    print(f"· {report.title}: {len(report.learners)} learners, {len(report.files)} files in {out}", file=sys.stderr)
    return 0


@_clean_errors
def cmd_export_training(args) -> int:
    from voice_tutor.classroom.training_export import export_training

    with _classroom_db(args) as store:
        if args.output:
            count = export_training(store, args.output, args.min_rating)
        else:
            count = export_training(store, sys.stdout, args.min_rating)
    where = f" to {args.output}" if args.output else ""
    print(f"· wrote {count} conversations{where}", file=sys.stderr)
    return 0


@_clean_errors
def cmd_privacy_purge(args) -> int:
    from voice_tutor.classroom.privacy import purge
    from voice_tutor.classroom.settings import load_privacy_config

    days = args.older_than if args.older_than is not None else load_privacy_config(args.config).retention_days
    if days is None:
        return _fail("give --older-than DAYS (or set [privacy] retention_days in --config)")
    if not args.yes:
        return _fail(f"purging deletes every transcript older than {days} days for good; add --yes to do it")
    with _classroom_db(args) as store:
        count = purge(store, days)
    print(f"deleted {count} turns of sessions older than {days} days", file=sys.stderr)
    return 0


def _add_classroom_commands(commands) -> None:
    store_options = _store_options("[dialogue] store, [privacy]")

    room = commands.add_parser("class", help="create classes and put learners in them")
    actions = room.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[store_options], help="a new class (or set its teacher)")
    create.add_argument("name")
    create.add_argument("--teacher", help="the teacher's name")
    create.set_defaults(run=cmd_class_create)
    add = actions.add_parser("add", parents=[store_options], help="put learners in a class (new names are created)")
    add.add_argument("name")
    add.add_argument("learners", nargs="+", metavar="LEARNER")
    add.set_defaults(run=cmd_class_add)
    remove = actions.add_parser("remove", parents=[store_options], help="take learners out of a class")
    remove.add_argument("name")
    remove.add_argument("learners", nargs="+", metavar="LEARNER")
    remove.set_defaults(run=cmd_class_remove)
    listing = actions.add_parser("list", parents=[store_options], help="every class, its teacher and learners")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_class_list)

    report = commands.add_parser("report", parents=[store_options],
                                 help="progress report of a class or learner: CSV, plots, HTML, PDF")
    report.add_argument("target", metavar="CLASS|LEARNER")
    report.add_argument("--out", type=Path, metavar="DIR", help="where to write (default ./report-TARGET)")
    report.add_argument("--format", default="html,csv,pdf", help="any of html,csv,pdf (default all)")
    report.add_argument("--lessons-dir", type=Path, help="lessons, for misconceptions and drop-off (default bundled)")
    report.set_defaults(run=cmd_report)

    export = commands.add_parser("export", help="export data for other uses")
    kinds = export.add_subparsers(dest="kind", required=True, metavar="KIND")
    training = kinds.add_parser("training", parents=[store_options],
                                help="rated conversations as OpenAI chat fine-tuning JSONL, personal data removed")
    training.add_argument("--min-rating", type=int, default=1, metavar="N",
                          help="train on tutor turns whose ratings sum to at least N (default 1)")
    training.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    training.set_defaults(run=cmd_export_training)

    privacy = commands.add_parser("privacy", help="retention of transcripts")
    pactions = privacy.add_subparsers(dest="action", required=True, metavar="ACTION")
    purge = pactions.add_parser("purge", parents=[store_options], help="delete transcripts older than the retention period")
    purge.add_argument("--older-than", type=int, metavar="DAYS", help="default: [privacy] retention_days")
    purge.add_argument("--yes", action="store_true", help="really delete (required)")
    purge.set_defaults(run=cmd_privacy_purge)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-tutor", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="log what every stage does")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="a TOML configuration file")
    common.add_argument("--stt-model", help="faster-whisper model: bundled:whisper-base, a directory, or a size")
    common.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where Whisper runs (default auto)")
    common.add_argument("--language", help="spoken language code (default en)")
    common.add_argument("--voice", help="piper voice: bundled:joe or a path to an .onnx voice")
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_command(commands, parents=[common])

    transcribe = commands.add_parser("transcribe", parents=[common], help="print the transcript of audio files")
    transcribe.add_argument("files", nargs="+", type=Path)
    transcribe.add_argument("--json", action="store_true", help="text, language, duration and timing per file")
    transcribe.add_argument("--lesson", help="a lesson id or file: its vocabulary biases recognition, "
                            "and its answer language is listened for")
    transcribe.set_defaults(run=cmd_transcribe)

    say = commands.add_parser("say", parents=[common], help="speak text into a WAV file")
    say.add_argument("text")
    say.add_argument("-o", "--output", type=Path, required=True)
    say.set_defaults(run=cmd_say)

    talk = commands.add_parser("talk", parents=[common], help="a spoken lesson (microphone, or a recording)")
    talk.add_argument("--input", type=Path, help="a recording of the learner instead of the microphone")
    talk.add_argument("--output", type=Path, help="write the tutor's voice to a WAV file instead of the speaker")
    talk.add_argument("--fast", action="store_true", help="feed --input as fast as possible, not in real time")
    talk.add_argument("--json", action="store_true",
                      help="one JSON object per turn (with the LLM fallbacks of that turn and why)")
    talk.add_argument("--lesson", help="lesson id or path (default arithmetic)")
    talk.add_argument("--name", help="the learner's name: a named learner is remembered across sessions")
    talk.add_argument("--db", type=Path, help="the learner database (default ~/.local/share/voice-tutor/tutor.db)")
    talk.add_argument("--llm-url", help="an OpenAI-compatible endpoint (default: the offline tutor)")
    talk.add_argument("--llm-model", help="the model to ask at --llm-url")
    talk.add_argument("--input-device", help="microphone (sounddevice name or index)")
    talk.add_argument("--output-device", help="speaker (sounddevice name or index)")
    talk.add_argument("--no-echo-cancellation", action="store_true",
                      help="microphone and speaker: do not remove the tutor's own voice from the microphone "
                           "(use with a headset)")
    talk.set_defaults(run=cmd_talk)

    bench = commands.add_parser("bench", parents=[common], help="measure latency, speed and memory here")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--sessions", type=int, metavar="N", help="run N concurrent sessions on the shared models")
    bench.set_defaults(run=cmd_bench)

    _add_learner_commands(commands)
    _add_classroom_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return args.run(args)
    except EXPECTED_ERRORS as error:
        print(f"voice-tutor: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
