"""HTTP adapter: FastAPI application under ``/api/v1``."""
