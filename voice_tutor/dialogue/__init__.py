"""The tutor's side of the conversation: lesson tutor, LLM backends, fallbacks."""
