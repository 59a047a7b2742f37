"""The classroom: classes, progress reports and analytics, training export, xAPI, privacy.

Everything here reads and writes through :class:`voice_tutor.store.Store`;
the pieces a running session needs (``XapiRecorder``, ``TranscriptRedactor``)
consume the same event bus as ``store.recorder.TurnRecorder``.
"""
