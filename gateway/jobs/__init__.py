"""Background work kept in the metadata store (see gateway/jobs/runner.py)."""

from gateway.jobs.runner import GiveUp, JobRunner, JobSettings

__all__ = ["GiveUp", "JobRunner", "JobSettings"]
