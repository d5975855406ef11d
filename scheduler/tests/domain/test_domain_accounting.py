"""Usage accounting, decay and quota levels."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from domain_factories import GIB, job, running

from gpunas_scheduler.domain.accounting import (
    account,
    api_call_level,
    decay_factor,
    gpu_quota_level,
    record_api_call,
    record_upload,
    upload_level,
)
from gpunas_scheduler.domain.model import Allocation, GpuSlice, QuotaLevel, Quotas, Tenant, TenantUsage

T0 = datetime(2026, 11, 10, tzinfo=timezone.utc).timestamp()
WEEK = 7 * 24 * 3600.0


def test_decay_halves_after_one_half_life():
    assert decay_factor(WEEK, WEEK) == pytest.approx(0.5)
    assert decay_factor(0, WEEK) == 1.0


def test_account_charges_gpu_seconds_and_decays_the_past():
    usage = {"suwon": TenantUsage("suwon", T0, decayed_gpu_seconds=1000.0, month="2026-11")}
    j = running(job("j", gpus=2), Allocation("a", (GpuSlice(0, 1), GpuSlice(1, 1)), 1000, 1024), T0 - 50)
    after = account(usage, [j], T0 + WEEK, WEEK)["suwon"]
    assert after.decayed_gpu_seconds == pytest.approx(500.0 + 2 * WEEK)
    assert after.month_gpu_seconds == pytest.approx(2 * WEEK)
    assert after.updated_at == T0 + WEEK


def test_account_charges_fractional_shares():
    j = running(job("j"), Allocation("a", (GpuSlice(0, GIB, 250),), 1000, 1024), T0)
    after = account({}, [j], T0 + 400, WEEK)["suwon"]
    assert after.month_gpu_seconds == pytest.approx(100.0)


def test_month_counter_restarts_at_the_boundary():
    dec1 = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
    usage = {"suwon": TenantUsage("suwon", dec1 - 100, month="2026-11", month_gpu_seconds=5000.0)}
    j = running(job("j"), Allocation("a", (GpuSlice(0, 1),), 1000, 1024), dec1 - 1000)
    after = account(usage, [j], dec1 + 300, WEEK)["suwon"]
    assert after.month == "2026-12"
    assert after.month_gpu_seconds == pytest.approx(300.0)


def test_gpu_quota_levels():
    tenant = Tenant("yongin", quotas=Quotas(gpu_hours_per_month=50))
    u = TenantUsage("yongin", T0, month="2026-11", month_gpu_seconds=39 * 3600.0)
    assert gpu_quota_level(tenant, u, T0).level is QuotaLevel.OK
    u = TenantUsage("yongin", T0, month="2026-11", month_gpu_seconds=40 * 3600.0)
    assert gpu_quota_level(tenant, u, T0).level is QuotaLevel.WARNING
    u = TenantUsage("yongin", T0, month="2026-11", month_gpu_seconds=50 * 3600.0)
    assert gpu_quota_level(tenant, u, T0).level is QuotaLevel.EXCEEDED
    stale = TenantUsage("yongin", T0, month="2026-10", month_gpu_seconds=500 * 3600.0)
    assert gpu_quota_level(tenant, stale, T0).level is QuotaLevel.OK


def test_api_calls_refused_at_the_daily_limit_and_reset_next_day():
    tenant = Tenant("yongin", quotas=Quotas(api_calls_per_day=5))
    u = None
    levels = []
    for _ in range(6):
        levels.append(api_call_level(tenant, u, T0).level)
        if levels[-1] is not QuotaLevel.EXCEEDED:
            u = record_api_call(u, "yongin", T0)
    assert levels == [QuotaLevel.OK] * 3 + [QuotaLevel.WARNING] * 2 + [QuotaLevel.EXCEEDED]
    assert api_call_level(tenant, u, T0 + 86400).level is QuotaLevel.OK


def test_upload_refused_when_it_would_pass_the_monthly_limit():
    tenant = Tenant("seongnam", quotas=Quotas(upload_bytes_per_month=1000))
    u = record_upload(None, "seongnam", 700, T0)
    assert upload_level(tenant, u, 200, T0).level is QuotaLevel.WARNING
    assert upload_level(tenant, u, 300, T0).level is QuotaLevel.WARNING
    assert upload_level(tenant, u, 301, T0).level is QuotaLevel.EXCEEDED
    assert upload_level(Tenant("x"), u, 10**12, T0).level is QuotaLevel.OK
