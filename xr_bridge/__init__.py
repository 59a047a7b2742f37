"""The same tutoring session, mirrored into AR/VR scenes, kiosks and dashboards."""
