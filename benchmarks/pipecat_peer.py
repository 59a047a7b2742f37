"""Pipecat, the voice-agent framework people use, on the same learner recording, with our models and tutor.

Run by ``benchmarks/side_by_side.py --pipecat`` in its own virtual environment
(``.venv-pipecat``: ``pipecat-ai[silero,whisper,piper]``, whose dependencies may
clash with ours), so it imports only the lesson tutor from this project; the model
paths are given by the caller (``voice_tutor/speech/bundled.py`` resolves them).  The pipeline is Pipecat's standard one:

    audio in ─► WhisperSTTService ─► user aggregator (Silero VAD + turn strategy) ─► tutor ─► PiperTTSService ─► timeline

- the same Whisper base model files (faster-whisper, int8 on the CPU; Pipecat's
  own transcription call, its defaults otherwise) and the same piper voice file;
- the offline lesson tutor answers each user turn (in place of an LLM);
- ``--stop default``: Pipecat's defaults, Silero VAD with ``stop_secs`` 0.2 and
  the Smart Turn v3 model deciding whether the turn is over;
  ``--stop 0.8``: the classic setting, VAD ``stop_secs`` 0.8 and the turn ends
  when the speech timeout allows, no turn model.

The recording is fed in real time in 20 ms frames.  The tutor's audio is laid
on a timeline as an ideal player would play it (each chunk at its arrival, or
after the previous one), cut where Pipecat interrupts it; the timeline is
written to ``--output`` (16 kHz) and the moments each user turn reached the
tutor to ``--turns`` (JSON, seconds from the recording's start), for
``side_by_side.py`` to score from the sound exactly as it scores this project.

    .venv-pipecat/bin/python benchmarks/pipecat_peer.py --input learner.wav --output tutor.wav \\
        --turns turns.json --whisper-model DIR --voice VOICE.onnx [--stop default|0.8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.dialogue.lesson_tutor import LessonTutor
from voice_tutor.learning.lessons import find_lesson, load_lesson

RATE = 16_000
LESSONS_DIR = Path(__file__).resolve().parent.parent / "assets" / "lessons"
FRAME_S = 0.02


class OfflineTutor(FrameProcessor):
    """The lesson tutor in the LLM's place: each user turn's words in, the reply's text out."""

    def __init__(self, lesson: str, clock: dict, turns: list[float]):
        super().__init__()
        self._tutor = LessonTutor(load_lesson(find_lesson(lesson, LESSONS_DIR)))
        self._context = DialogueContext("pipecat", "friend")
        self._clock, self._turns = clock, turns
        self._opened = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        self._turns.append(time.monotonic() - self._clock["origin"])
        if not self._opened:  # the tutor's state starts at its first question, as in a session
            async for _ in self._tutor.opening(self._context):
                pass
            self._opened = True
        said = [m for m in frame.context.get_messages() if m.get("role") == "user"]
        text = said[-1]["content"] if said else ""
        if isinstance(text, list):
            text = " ".join(part.get("text", "") for part in text if isinstance(part, dict))
        await self.push_frame(LLMFullResponseStartFrame())
        async for piece in self._tutor.respond(str(text), self._context):
            await self.push_frame(LLMTextFrame(piece))
        await self.push_frame(LLMFullResponseEndFrame())


class Timeline(FrameProcessor):
    """Where an ideal player would play the tutor's audio: at arrival, after what is queued; cut on interruption."""

    def __init__(self, clock: dict):
        super().__init__()
        self._clock = clock
        self.pieces: list[list] = []  # [start_s, samples]
        self._cursor = 0.0

    def _now(self) -> float:
        return time.monotonic() - self._clock["origin"]

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            samples = np.frombuffer(frame.audio, dtype="<i2").astype(np.float32) / 32768
            if frame.sample_rate != RATE:
                import soxr

                samples = soxr.resample(samples, frame.sample_rate, RATE).astype(np.float32)
            start = max(self._now(), self._cursor)
            self.pieces.append([start, samples])
            self._cursor = start + len(samples) / RATE
        elif isinstance(frame, InterruptionFrame):
            now = self._now()
            for piece in self.pieces:
                if piece[0] + len(piece[1]) / RATE > now:
                    piece[1] = piece[1][: max(0, int((now - piece[0]) * RATE))]
            self._cursor = now
        await self.push_frame(frame, direction)

    def render(self, seconds: float) -> np.ndarray:
        out = np.zeros(int(seconds * RATE), np.float32)
        for start, samples in self.pieces:
            at = int(start * RATE)
            part = samples[: max(0, len(out) - at)]
            out[at : at + len(part)] += part
        return out


def stop_settings(stop: str) -> LLMUserAggregatorParams:
    if stop == "default":
        return LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    return LLMUserAggregatorParams(
        vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=float(stop))),
        user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy()]),
    )


async def run(recording: Path, stop: str, lesson: str, whisper_model: str, voice: Path,
              tail_s: float = 3.0) -> tuple[np.ndarray, list[float]]:
    audio, rate = soundfile.read(recording, dtype="int16")
    if rate != RATE or audio.ndim != 1:
        raise SystemExit(f"{recording}: expected 16 kHz mono")
    audio = np.concatenate([audio, np.zeros(int(tail_s * RATE), np.int16)])
    clock: dict = {"origin": time.monotonic()}
    turns: list[float] = []
    stt = WhisperSTTService(settings=WhisperSTTService.Settings(model=whisper_model),
                            device="cpu", compute_type="int8")
    tts = PiperTTSService(settings=PiperTTSService.Settings(voice=voice.stem), download_dir=voice.parent)
    context = LLMContext([])
    user, assistant = LLMContextAggregatorPair(context, user_params=stop_settings(stop))
    timeline = Timeline(clock)
    pipeline = Pipeline([stt, user, OfflineTutor(lesson, clock, turns), tts, timeline, assistant])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
                            enable_rtvi=False, idle_timeout_secs=None)

    async def feed():
        await asyncio.sleep(2.0)  # models loaded, pipeline started
        step = int(FRAME_S * RATE)
        clock["origin"] = origin = time.monotonic()
        for index in range(0, len(audio), step):
            delay = origin + index / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await worker.queue_frame(InputAudioRawFrame(audio=audio[index : index + step].tobytes(),
                                                        sample_rate=RATE, num_channels=1))
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())
    return timeline.render(len(audio) / RATE), turns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="16 kHz mono learner recording")
    parser.add_argument("--output", type=Path, required=True, help="the tutor's timeline (16 kHz WAV)")
    parser.add_argument("--turns", type=Path, required=True, help="JSON: when each user turn reached the tutor")
    parser.add_argument("--stop", default="default", help="'default' (VAD 0.2 s + Smart Turn v3) or seconds")
    parser.add_argument("--lesson", default="arithmetic")
    parser.add_argument("--whisper-model", required=True, help="the CTranslate2 Whisper directory the session uses")
    parser.add_argument("--voice", type=Path, required=True, help="the piper .onnx voice the session uses")
    args = parser.parse_args(argv)
    timeline, turns = asyncio.run(run(args.input, args.stop, args.lesson, args.whisper_model, args.voice))
    soundfile.write(args.output, timeline, RATE)
    args.turns.write_text(json.dumps({"turns_s": turns, "stop": args.stop}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
