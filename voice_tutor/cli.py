"""The ``voice-tutor`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from voice_tutor import __version__
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
        transcript = recognizer.transcribe(audio)
        if args.json:
            print(json.dumps({
                "file": str(path),
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


async def _print_live(session, json_mode: bool) -> None:
    from voice_tutor.events import (
        BargeIn, FinalTranscript, PartialTranscript, SessionNotice, TurnCompleted, TutorSpeechEnded,
    )

    queue = session.bus.subscribe()
    rewrite = "\r\033[K" if sys.stdout.isatty() else ""
    while True:
        event = await queue.get()
        if json_mode:
            if isinstance(event, TurnCompleted):
                print(json.dumps({
                    "turn": event.turn_id, "learner": event.learner, "tutor": event.tutor,
                    "heard": event.heard, "cut": event.cut, "latency_ms": event.latency_ms,
                }), flush=True)
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
                print(f"  tutor:   {event.heard if event.cut else event.tutor}{' … (cut)' if event.cut else ''}")
                print(f"           [{latency}]", flush=True)
            case SessionNotice():
                print(f"  ! {event.message}", flush=True)


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
                sink = WavFileSink(args.output, models.synthesizer.sample_rate, realtime=not args.fast)
            else:
                sink = SpeakerSink(models.synthesizer.sample_rate, args.output_device)
            session = tutoring.session(models, source, sink)
            printer = asyncio.create_task(_print_live(session, args.json))
            if not args.json:
                _progress(f"lesson: {tutoring.lesson.title} — tutor: {tutoring.tutor.name}")
                _progress(f"playing {args.input} into the session" if args.input else "listening (Ctrl+C to stop)")
            try:
                await tutoring.run(session)
            finally:
                await asyncio.sleep(0)
                printer.cancel()
        finally:
            models.close()
    finally:
        if store:
            store.close()
    return 0


def cmd_talk(args) -> int:
    config = _config(args)
    try:
        return asyncio.run(_talk(args, config))
    except KeyboardInterrupt:
        return 130


def cmd_bench(args) -> int:
    from voice_tutor.bench import main as bench_main

    return bench_main(_config(args), args.json)


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

    transcribe = commands.add_parser("transcribe", parents=[common], help="print the transcript of audio files")
    transcribe.add_argument("files", nargs="+", type=Path)
    transcribe.add_argument("--json", action="store_true", help="text, language, duration and timing per file")
    transcribe.set_defaults(run=cmd_transcribe)

    say = commands.add_parser("say", parents=[common], help="speak text into a WAV file")
    say.add_argument("text")
    say.add_argument("-o", "--output", type=Path, required=True)
    say.set_defaults(run=cmd_say)

    talk = commands.add_parser("talk", parents=[common], help="a spoken lesson (microphone, or a recording)")
    talk.add_argument("--input", type=Path, help="a recording of the learner instead of the microphone")
    talk.add_argument("--output", type=Path, help="write the tutor's voice to a WAV file instead of the speaker")
    talk.add_argument("--fast", action="store_true", help="feed --input as fast as possible, not in real time")
    talk.add_argument("--json", action="store_true", help="one JSON object per turn")
    talk.add_argument("--lesson", help="lesson id or path (default arithmetic)")
    talk.add_argument("--name", help="the learner's name: a named learner is remembered across sessions")
    talk.add_argument("--db", type=Path, help="the learner database (default ~/.local/share/voice-tutor/tutor.db)")
    talk.add_argument("--llm-url", help="an OpenAI-compatible endpoint (default: the offline tutor)")
    talk.add_argument("--llm-model", help="the model to ask at --llm-url")
    talk.add_argument("--input-device", help="microphone (sounddevice name or index)")
    talk.add_argument("--output-device", help="speaker (sounddevice name or index)")
    talk.set_defaults(run=cmd_talk)

    bench = commands.add_parser("bench", parents=[common], help="measure latency, speed and memory here")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(run=cmd_bench)
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
