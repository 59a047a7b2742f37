"""A real-time voice tutor: hear the learner, answer aloud, remember what they know."""

__version__ = "0.1.0"
