"""Usage accounting: GPU time with half-life decay, monthly GPU hours, daily API calls, uploads.

All functions are pure and take the current time as an argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone

from .model import Job, QuotaDimension, QuotaLevel, QuotaNotice, Tenant, TenantUsage


def month_key(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m")


def day_key(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def month_start(ts: float) -> float:
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp()


def decay_factor(elapsed_s: float, half_life_s: float) -> float:
    """Factor applied to past usage after ``elapsed_s`` (Slurm's PriorityDecayHalfLife)."""
    if elapsed_s <= 0:
        return 1.0
    return math.pow(0.5, elapsed_s / half_life_s)


def account(
    usage: Mapping[str, TenantUsage],
    running: Iterable[Job],
    now: float,
    half_life_s: float,
) -> dict[str, TenantUsage]:
    """Bring every tenant's usage up to ``now``.

    Each running job is charged ``gpu_units * seconds`` for the part of ``[updated_at, now]``
    it ran in. Past decayed usage is multiplied by the half-life factor of the elapsed time,
    and the charge of this interval is added undecayed. The monthly counter restarts at each UTC
    month boundary and only counts the part of the interval inside the current month.
    """
    charge: dict[str, tuple[float, float]] = {}
    m_start = month_start(now)
    for job in running:
        if job.allocation is None or job.started_at is None:
            continue
        previous = usage.get(job.tenant)
        since = previous.updated_at if previous is not None else job.started_at
        begin = max(job.started_at, since)
        if begin >= now:
            continue
        units = job.allocation.gpu_units
        total, in_month = charge.get(job.tenant, (0.0, 0.0))
        total += units * (now - begin)
        in_month += units * (now - max(begin, m_start))
        charge[job.tenant] = (total, in_month)
    month = month_key(now)
    result: dict[str, TenantUsage] = {}
    for name in set(usage) | set(charge):
        u = usage.get(name, TenantUsage(tenant=name, updated_at=now, month=month))
        total, in_month = charge.get(name, (0.0, 0.0))
        month_seconds = u.month_gpu_seconds + in_month if u.month == month else in_month
        upload = u.month_upload_bytes if u.month == month else 0
        result[name] = replace(
            u,
            updated_at=max(now, u.updated_at),
            decayed_gpu_seconds=u.decayed_gpu_seconds * decay_factor(now - u.updated_at, half_life_s) + total,
            month=month,
            month_gpu_seconds=month_seconds,
            month_upload_bytes=upload,
        )
    return result


def accrue(usage: TenantUsage, gpu_units: float, now: float, half_life_s: float) -> TenantUsage:
    """Usage after ``gpu_units`` GPUs ran for the whole of ``[updated_at, now]`` (the simulator's
    per-tenant form of ``account``: same decay and month rules, one constant rate)."""
    begin = usage.updated_at
    if now <= begin:
        return usage
    month = month_key(now)
    in_month = gpu_units * (now - max(begin, month_start(now)))
    same_month = usage.month == month
    return replace(
        usage,
        updated_at=now,
        decayed_gpu_seconds=usage.decayed_gpu_seconds * decay_factor(now - begin, half_life_s)
        + gpu_units * (now - begin),
        month=month,
        month_gpu_seconds=(usage.month_gpu_seconds if same_month else 0.0) + in_month,
        month_upload_bytes=usage.month_upload_bytes if same_month else 0,
    )


def _level(used: float, limit: float | None, warning_ratio: float, reaching: bool = True) -> tuple[QuotaLevel, float]:
    """Level of ``used`` against ``limit``; reaching the limit exceeds it when ``reaching``,
    otherwise only going past it does (for a request that would bring usage to ``used``)."""
    if limit is None:
        return QuotaLevel.OK, 0.0
    if limit <= 0:
        return QuotaLevel.EXCEEDED, math.inf
    ratio = used / limit
    if ratio > 1.0 or (reaching and ratio == 1.0):
        return QuotaLevel.EXCEEDED, ratio
    if ratio >= warning_ratio:
        return QuotaLevel.WARNING, ratio
    return QuotaLevel.OK, ratio


def gpu_quota_level(tenant: Tenant, usage: TenantUsage | None, now: float, warning_ratio: float = 0.8) -> QuotaNotice:
    used = 0.0
    if usage is not None and usage.month == month_key(now):
        used = usage.month_gpu_seconds / 3600.0
    level, ratio = _level(used, tenant.quotas.gpu_hours_per_month, warning_ratio)
    return QuotaNotice(tenant.name, QuotaDimension.GPU_HOURS_PER_MONTH, level, ratio)


def api_call_level(tenant: Tenant, usage: TenantUsage | None, now: float, warning_ratio: float = 0.8) -> QuotaNotice:
    """Level after one more call; ``EXCEEDED`` means the call must be refused."""
    used = 1
    if usage is not None and usage.day == day_key(now):
        used += usage.day_api_calls
    level, ratio = _level(float(used), _as_float(tenant.quotas.api_calls_per_day), warning_ratio, False)
    return QuotaNotice(tenant.name, QuotaDimension.API_CALLS_PER_DAY, level, ratio)


def upload_level(
    tenant: Tenant, usage: TenantUsage | None, nbytes: int, now: float, warning_ratio: float = 0.8
) -> QuotaNotice:
    """Level after uploading ``nbytes`` more; ``EXCEEDED`` means the upload must be refused."""
    used = nbytes
    if usage is not None and usage.month == month_key(now):
        used += usage.month_upload_bytes
    level, ratio = _level(float(used), _as_float(tenant.quotas.upload_bytes_per_month), warning_ratio, False)
    return QuotaNotice(tenant.name, QuotaDimension.UPLOAD_BYTES_PER_MONTH, level, ratio)


def _as_float(value: int | None) -> float | None:
    return None if value is None else float(value)


def record_api_call(usage: TenantUsage | None, tenant: str, now: float) -> TenantUsage:
    u = usage if usage is not None else TenantUsage(tenant=tenant, updated_at=now, month=month_key(now))
    day = day_key(now)
    calls = u.day_api_calls + 1 if u.day == day else 1
    return replace(u, day=day, day_api_calls=calls)


def record_upload(usage: TenantUsage | None, tenant: str, nbytes: int, now: float) -> TenantUsage:
    u = usage if usage is not None else TenantUsage(tenant=tenant, updated_at=now, month=month_key(now))
    month = month_key(now)
    if u.month != month:
        u = replace(u, month=month, month_gpu_seconds=0.0, month_upload_bytes=0)
    return replace(u, month_upload_bytes=u.month_upload_bytes + nbytes)
