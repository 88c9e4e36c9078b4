"""Bucket lifecycle: configuration (rules.py), settings (settings.py) and execution through the
job queue (service.py). Import the submodules directly: config.py imports settings.py, which
must stay free of the engine's imports."""
