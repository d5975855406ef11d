"""Persistence adapters (SQLAlchemy Core for SQLite/PostgreSQL, and an in-memory twin)."""
