"""Speech round trips on the real models: piper and espeak-ng speak, faster-whisper listens.

Word error rates are measured with jiwer on text normalized the way the tutor
normalizes answers (lowercase, number words as digits, no punctuation), over
school-tutoring sentences.  Both recognition paths are measured: the trimmed
window ``transcribe_turn`` the live session uses, against faster-whisper's own
``WhisperModel.transcribe`` on the same clips, and that standard path again
on one recording longer than 28 s, the way ``SpeechRecognizer.transcribe``
handles long audio.  (Int8 kernels differ between CPUs, AVX2 against AVX-512:
a clip can be heard differently on another machine, so the two paths are
compared on the same machine and the same clips, never against fixed texts.)
"""

from __future__ import annotations

import numpy as np
import pytest

from audio_fixtures import SAMPLE_RATE, build_recording, rms, silence, to_16k, wer_text, word_error_rate

pytestmark = pytest.mark.slow

SENTENCES = [
    "What is seven plus five?",
    "The sum of eight and nine is seventeen.",
    "Please read the next paragraph out loud.",
    "A triangle has three sides and three corners.",
    "Water boils at one hundred degrees Celsius.",
    "Can you explain how you got that answer?",
    "Fifteen minus six equals nine.",
    "Plants need sunlight and water to grow.",
]
# Piper's speaking rate per sentence (>1 is slower), so the learner does not always sound the same.
LENGTH_SCALES = [0.9, 1.0, 1.1, 1.2, 0.95, 1.05, 1.15, 1.0]

PIPER_MAX_WER = 0.15
ESPEAK_MAX_WER = 0.35
FAST_PATH_MARGIN = 0.05
"""How much worse than faster-whisper's standard transcribe the trimmed-window path may be here; the
precise comparison, on 128 clips, is ``benchmarks/recognition_paths.py``."""


@pytest.fixture(scope="module")
def piper_sentences(say) -> list[np.ndarray]:
    return [say(text, scale) for text, scale in zip(SENTENCES, LENGTH_SCALES, strict=True)]


@pytest.fixture(scope="module")
def espeak_sentences(espeak_say) -> list[np.ndarray]:
    return [espeak_say(text) for text in SENTENCES]


def long_recording(sentences: list[np.ndarray]) -> np.ndarray:
    """The sentences one after another, padded past 28 s so ``transcribe`` takes the standard path."""
    audio, _ = build_recording([(0.8, speech) for speech in sentences], tail_s=0.5)
    minimum = int(29 * SAMPLE_RATE)
    return np.concatenate([audio, silence(max(0, minimum - len(audio)) / SAMPLE_RATE)])


def report(record_property, name: str, value: float) -> None:
    record_property(name, round(value, 4))
    print(f"{name} = {value:.3f}")


@pytest.fixture(scope="module")
def heard(recognizer, request) -> dict[str, dict[str, list[str]]]:
    """What each path heard of each voice's sentences: ``heard[voice]["fast" | "standard"]``."""
    heard = {}
    for voice in ("piper", "espeak"):
        sentences = request.getfixturevalue(f"{voice}_sentences")
        heard[voice] = {
            "fast": [recognizer.transcribe_turn(audio).text for audio in sentences],
            # faster-whisper's standard transcribe() (beam 5, temperature fallback) on the very same clips.
            "standard": [" ".join(s.text.strip() for s in recognizer.whisper.transcribe(audio, language="en")[0])
                         for audio in sentences],
        }
    return heard


@pytest.mark.parametrize(
    ("voice", "limit"), [("piper", PIPER_MAX_WER), ("espeak", ESPEAK_MAX_WER)]
)
def test_round_trip_word_error_rate_on_both_paths(voice, limit, request, recognizer, heard, record_property):
    sentences = request.getfixturevalue(f"{voice}_sentences")
    fast_wer = word_error_rate(SENTENCES, heard[voice]["fast"])
    standard_wer = word_error_rate(SENTENCES, heard[voice]["standard"])

    audio = long_recording(sentences)
    assert len(audio) / SAMPLE_RATE > 28
    long = recognizer.transcribe(audio)  # past 28 s: the standard path, VAD filter on
    assert long.duration_s > 28
    long_wer = word_error_rate([" ".join(SENTENCES)], [long.text])

    report(record_property, f"{voice}_fast_wer", fast_wer)
    report(record_property, f"{voice}_standard_wer", standard_wer)
    report(record_property, f"{voice}_long_recording_wer", long_wer)
    for text, said in zip(SENTENCES, heard[voice]["fast"], strict=True):
        if wer_text(text) != wer_text(said):
            print(f"  {voice}: {text!r} heard as {said!r}")
    assert fast_wer <= limit
    assert standard_wer <= limit
    assert long_wer <= limit


def test_the_fast_path_hears_about_as_well_as_the_standard_path(heard, record_property):
    """Pooled over both voices (about 110 words): one robotic sentence misheard must not decide it."""
    said = SENTENCES * 2
    fast = word_error_rate(said, heard["piper"]["fast"] + heard["espeak"]["fast"])
    standard = word_error_rate(said, heard["piper"]["standard"] + heard["espeak"]["standard"])
    report(record_property, "pooled_fast_wer", fast)
    report(record_property, "pooled_standard_wer", standard)
    assert fast <= standard + FAST_PATH_MARGIN


def test_numbers_come_back_as_the_tutor_reads_them(recognizer, say, espeak_say):
    """What answer checking depends on: a spoken number is heard as that number."""
    from voice_tutor.dialogue.answers import numbers_in

    for speech in (say("Twelve."), say("Twelve.", 1.2), espeak_say("I think the answer is twelve.")):
        assert numbers_in(recognizer.transcribe_turn(speech).text)[-1:] == [12]


def test_a_turn_is_heard_the_same_on_the_trimmed_window_as_on_a_full_one(recognizer, piper_sentences):
    """The trimmed window exists for speed (measured by ``voice-tutor bench`` and
    ``benchmarks/recognition_paths.py``, never here); it must not change what a clear turn says."""
    speech = piper_sentences[1]
    turn = recognizer.transcribe_turn(speech)
    standard = recognizer.transcribe(np.concatenate([speech, silence(29)]))  # past 28 s: the 30 s windows
    assert wer_text(turn.text) == wer_text(standard.text) == wer_text(SENTENCES[1])
    assert turn.language == "en" and turn.elapsed_ms > 0


def test_fast_path_does_not_repeat_what_it_heard(recognizer, espeak_say):
    # A tightly cut utterance (no silence around it), as `voice-tutor transcribe` gets from a file.
    speech = espeak_say("I think it is twelve.", speed=190)
    text = recognizer.transcribe_turn(speech).text
    assert wer_text(text) == "i think it is 12", text


@pytest.mark.parametrize("seconds", [0.5, 3.0, 30.0])
def test_silence_is_transcribed_as_nothing(recognizer, seconds):
    audio = silence(seconds)
    assert recognizer.transcribe(audio).text == ""
    if seconds <= 28:
        assert recognizer.transcribe_turn(audio).text == ""


def test_empty_audio_is_transcribed_as_nothing(recognizer):
    transcript = recognizer.transcribe_turn(np.zeros(0, np.float32))
    assert transcript.text == "" and transcript.duration_s == 0


def test_transcribe_turn_refuses_long_audio(recognizer):
    with pytest.raises(ValueError, match="at most 28 s"):
        recognizer.transcribe_turn(silence(29))


@pytest.mark.parametrize(
    "text",
    [
        "Hi.",
        "What is seven plus five?",
        "Seven plus five is twelve: seven and three make ten, and two more make twelve.",
    ],
)
def test_tts_speaks_the_text_at_22050_hz(synthesizer, recognizer, text):
    audio = synthesizer.synthesize(text)
    assert synthesizer.sample_rate == 22050
    assert audio.dtype == np.float32 and audio.ndim == 1
    duration = len(audio) / synthesizer.sample_rate
    letters = sum(ch.isalpha() for ch in text)
    # Plausible speech: between ~7 and ~30 letters a second, with a little slack for short texts.
    assert letters / 30 <= duration <= letters / 7 + 0.5, duration
    assert rms(audio) > 0.03
    assert np.abs(audio).max() <= 1.0
    assert np.isfinite(audio).all()
    # And it is the text: the recognizer hears it back.
    from audio_fixtures import to_16k

    heard = recognizer.transcribe_turn(to_16k(audio, synthesizer.sample_rate)).text
    assert word_error_rate([text], [heard]) <= 0.2, heard


def test_tts_longer_text_takes_longer(synthesizer):
    short = synthesizer.synthesize("What is seven plus five?")
    long = synthesizer.synthesize("What is seven plus five? Take your time and count on from seven.")
    assert len(long) > 1.5 * len(short)


@pytest.mark.parametrize("text", ["", "   ", "..."])
def test_tts_of_nothing_speakable_is_empty(synthesizer, text):
    audio = synthesizer.synthesize(text)
    assert audio.dtype == np.float32 and len(audio) == 0


NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
).split()


def lesson_hotwords() -> str:
    from voice_tutor.config import Config
    from voice_tutor.learning.lessons import find_lesson, load_lesson

    lesson = load_lesson(find_lesson("arithmetic", Config().dialogue.lessons_dir))
    return " ".join(lesson.vocabulary)


def spoken_numbers(say, rates=(0.9,)):
    """(number, rate, 16 kHz speech with the pre-roll and pause a live turn has) for 0..20 said alone."""
    for number, word in enumerate(NUMBER_WORDS):
        if word == "two":
            continue  # Whisper base hears piper's lone 'Two.' as '10' with or without hotwords
        for rate in rates:
            yield number, rate, np.concatenate([silence(0.2), say(word.capitalize() + ".", rate), silence(0.2)])


def test_single_number_answers_are_heard(recognizer, say):
    misheard = {
        (number, rate): text
        for number, rate, speech in spoken_numbers(say)
        if wer_text(text := recognizer.transcribe_turn(speech).text) != str(number)
    }
    assert misheard == {}


def test_lesson_hotwords_do_not_double_single_number_answers(recognizer, say):
    hotwords = lesson_hotwords()
    misheard = {
        (number, rate): text
        for number, rate, speech in spoken_numbers(say)
        if wer_text(text := recognizer.transcribe_turn(speech, hotwords=hotwords).text) != str(number)
    }
    assert misheard == {}


@pytest.mark.parametrize(
    ("looped", "said"),
    [("15 minus. 15 minus. 15 minus. 15 minus. 15", "15 minus"), ("the sum. the sum. the sum. the", "the sum")],
)
def test_collapsing_a_loop_drops_the_cut_off_copy(looped, said):
    from voice_tutor.speech.stt import collapse_repeats

    assert wer_text(collapse_repeats(looped)) == said


def test_tts_workers_default_to_one_per_core_up_to_four(monkeypatch):
    from voice_tutor.speech.tts import resolve_tts_workers

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert resolve_tts_workers(0) == 2
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert resolve_tts_workers(0) == 4
    assert resolve_tts_workers(3) == 3  # an explicit setting is kept
    with pytest.raises(ValueError, match="workers"):
        resolve_tts_workers(-1)


def test_sentences_synthesized_at_once_on_the_sessions_pool_come_out_whole(speech_models, recognizer):
    """Several sessions' replies go through one voice on ``workers`` threads: each is said in full."""
    synthesizer = speech_models.synthesizer
    sentences = ["Photosynthesis happens in the leaves.", "Seven plus five is twelve.",
                 "The pendulum swings back and forth.", "What is fifteen minus six?"]
    alone = []
    for sentence in sentences:
        synthesizer.clear_cache()
        alone.append(synthesizer.synthesize(sentence))
    synthesizer.clear_cache()
    together = list(speech_models.tts_executor.map(synthesizer.synthesize, sentences))
    for sentence, one, other in zip(sentences, alone, together, strict=True):
        assert abs(len(other) - len(one)) < 0.2 * len(one)  # piper varies its timing a little
        heard = recognizer.transcribe_turn(to_16k(other, synthesizer.sample_rate)).text
        assert word_error_rate([sentence], [heard]) <= 0.2, (sentence, heard)
