"""Celery workers: the app, its per-process lifecycle, the beat schedule and thin tasks."""
