"""Audio sources and sinks, resampling, voice activity detection."""
