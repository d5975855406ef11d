# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Data-driven tests of the zfs_pool and zfs_dataset modules (cases in cases.yml; runner in ../storage_cases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.gpunas.platform.plugins.modules import zfs_dataset, zfs_pool
from ansible_collections.gpunas.platform.tests.unit.plugins.modules.storage_cases import check_case, load_cases

CASES = load_cases(Path(__file__).resolve().parent / 'cases.yml')
MODULES = {'zfs_pool': zfs_pool, 'zfs_dataset': zfs_dataset}


@pytest.mark.parametrize('case', CASES, ids=[case['name'] for case in CASES])
def test_case(case, tmp_path, monkeypatch, capsys):
    check_case(MODULES, case, tmp_path, monkeypatch, capsys)
