"""The session's latency figures agree with the sound: ``talk --input --output`` measured from its two files.

A learner recording is played in real time into ``voice-tutor talk``; the end
of each utterance is read from the recording (last 10 ms within 35 dB of its
loudest) and the tutor's first audio from ``tutor.wav`` (first 10 ms above
-50 dBFS after it), and compared with the ``latency_ms["first_audio"]`` the
command reports for the same turn.  Before the fix they disagreed by ~100 ms:
the VAD's hysteresis stamped the end of speech late, piper's silent lead-in
played before any sound, and the output timeline started when the sink opened,
not with the recording.  No timing of the pipeline is asserted, only agreement.
"""

from __future__ import annotations

import soundfile

from audio_fixtures import SAMPLE_RATE
from test_talk import parse_turns
from voice_tutor.audio.levels import first_sound_s, speech_end_s

AGREEMENT_MS = 30.0
"""10 ms windows on both files plus the 10 ms kept before the reply's first sound."""


def test_reported_first_audio_latency_is_what_the_output_file_shows(run_cli, recording, say, espeak_say, tmp_path):
    clips = [say("Twelve."), espeak_say("I think it is nine.")]
    learner, placed = recording([(8.0, clips[0]), (6.0, clips[1])], tail_s=1.0)
    tutor_wav = tmp_path / "tutor.wav"
    result = run_cli("talk", "--input", learner, "--output", tutor_wav, "--json", timeout=180)
    assert result.returncode == 0, result.stderr
    turns = parse_turns(result.stdout)
    assert len(turns) == len(clips)
    tutor, rate = soundfile.read(tutor_wav, dtype="float32")
    for turn, clip, place in zip(turns, clips, placed, strict=True):
        end_s = place.start + speech_end_s(clip, SAMPLE_RATE)
        first_s = first_sound_s(tutor, rate, after_s=end_s)
        assert first_s is not None, turn
        from_audio_ms = (first_s - end_s) * 1000
        assert turn["clock"] == "real-time"
        reported_ms = turn["latency_ms"]["first_audio"]
        assert abs(from_audio_ms - reported_ms) <= AGREEMENT_MS, (from_audio_ms, reported_ms)
