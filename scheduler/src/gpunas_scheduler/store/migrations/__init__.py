"""Alembic migrations of the scheduler schema (run with ``gpunas-scheduler migrate``)."""
