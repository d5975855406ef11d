"""Shared helpers for the server-side tests (service, store, api, cli)."""
