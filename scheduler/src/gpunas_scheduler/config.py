"""Server configuration: a TOML file validated before anything starts (``check-config``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import tomllib
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url

DEFAULT_PATH = Path("/etc/gpunas-scheduler/config.toml")
ENV_DATABASE_URL = "GPUNAS_SCHEDULER_DATABASE_URL"


class ConfigError(Exception):
    """Invalid configuration; the message names every bad field."""


def _no_parent_segment(path: str) -> str:
    if ".." in path.split("/"):
        raise ValueError("must not contain '..'")
    return path


TenantName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
# A NAS share or dataset as job mounts name their ``source`` (relative, e.g. ``tank/suwon``).
NasPath = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9._-][A-Za-z0-9._/-]{0,255}$"), AfterValidator(_no_parent_segment)
]
ClassName = Literal["urgent_inference", "inference", "fine_tuning", "training"]
TenantRoleName = Literal["tenant_member", "tenant_admin"]


class ClassEntitlement(BaseModel):
    """``[classes.<class>]``: who may submit the class and how far a job of it may exempt itself
    from preemption (docs/operations.md, "Class entitlements")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: list[TenantName] | None = Field(
        None, description="tenants entitled to the class; absent: every tenant (none for urgent_inference)"
    )
    roles: list[TenantRoleName] | None = Field(None, description="tenant roles entitled; absent: both")
    max_min_runtime_s: int = Field(1800, ge=0, le=86400, description="largest min_runtime_s a job may ask for")
    max_checkpoint_grace_s: int = Field(300, ge=0, le=3600, description="largest checkpoint_grace_s")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field(
        "sqlite:////var/lib/gpunas-scheduler/scheduler.db",
        description="sqlite:///<absolute path> or postgresql+psycopg://user@host/db",
    )
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(8080, ge=1, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    schedule_interval_s: float = Field(1.0, ge=0.05, le=60, allow_inf_nan=False)
    heartbeat_timeout_s: float = Field(30.0, ge=1, le=3600, allow_inf_nan=False)
    leader_lease_s: float = Field(
        15.0, ge=1, le=600, allow_inf_nan=False, description="a leader that stops renewing loses leadership after this"
    )
    fairshare_half_life_s: float = Field(7 * 86400.0, ge=60, le=365 * 86400, allow_inf_nan=False)
    training_max_runtime_s: float = Field(24 * 3600.0, ge=60, le=365 * 86400, allow_inf_nan=False)
    quota_warning_ratio: float = Field(0.8, gt=0, lt=1, allow_inf_nan=False)
    max_body_bytes: int = Field(65536, ge=1024, le=16 * 1024 * 1024)
    metrics_public: bool = False
    token_cache_ttl_s: float = Field(5.0, ge=0, le=300, allow_inf_nan=False)
    default_token_ttl_s: float = Field(30 * 86400.0, ge=60, le=365 * 86400, allow_inf_nan=False)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    classes: dict[ClassName, ClassEntitlement] = Field(
        default_factory=dict, description="per-class entitlements and limits; see docs/operations.md"
    )
    tenant_nas_paths: dict[TenantName, list[NasPath]] = Field(
        default_factory=dict,
        description="tenant -> NAS paths its jobs may mount (sources at or below one); unnamed tenants mount nothing",
    )

    @field_validator("database_url")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            url = make_url(v)
        except Exception as exc:
            raise ValueError(f"not a database URL: {exc}") from exc
        backend = url.get_backend_name()
        if backend == "sqlite":
            db = url.database or ""
            if not db or db == ":memory:" or not os.path.isabs(db):
                raise ValueError("sqlite needs an absolute file path: sqlite:////var/lib/gpunas-scheduler/scheduler.db")
        elif backend == "postgresql":
            if url.get_driver_name() != "psycopg":
                raise ValueError("use the psycopg 3 driver: postgresql+psycopg://...")
        else:
            raise ValueError(f"unsupported backend {backend!r}; use sqlite or postgresql+psycopg")
        return v

    @model_validator(mode="after")
    def _lease(self) -> Config:
        if self.leader_lease_s < 3 * self.schedule_interval_s:
            raise ValueError("leader_lease_s must be at least 3 x schedule_interval_s (renewed every pass)")
        return self

    @model_validator(mode="after")
    def _tls(self) -> Config:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        for name in ("tls_cert_file", "tls_key_file"):
            p = getattr(self, name)
            if p is not None and not p.is_file():
                raise ValueError(f"{name}: {p} is not a readable file")
        return self


def load_config(path: Path | None) -> Config:
    """Read ``path`` (or the default path if it exists); ``GPUNAS_SCHEDULER_DATABASE_URL`` overrides
    ``database_url`` so a password need not be written to the file."""
    data: dict[str, object] = {}
    src = path if path is not None else (DEFAULT_PATH if DEFAULT_PATH.exists() else None)
    if src is not None:
        try:
            data = tomllib.loads(src.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{src}: no such file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{src}: not valid TOML: {exc}") from exc
    env_url = os.environ.get(ENV_DATABASE_URL)
    if env_url:
        data["database_url"] = env_url
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration ({src or 'defaults'}): {problems}") from exc
