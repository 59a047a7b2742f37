"""Lessons and the learner model."""
