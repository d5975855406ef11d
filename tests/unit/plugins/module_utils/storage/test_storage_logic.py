# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Data-driven tests of the pure planning logic (cases in logic_cases.yml)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest
import yaml
from ansible_collections.gpunas.platform.plugins.module_utils import _mdadm, _zfs

HERE = Path(__file__).resolve().parent
CASES = yaml.safe_load((HERE / 'logic_cases.yml').read_text())
SNAPSHOT_TOOL = HERE.parents[4] / 'roles' / 'zfs' / 'files' / 'gpunas_zfs_snapshot.py'


def ids(cases):
    return [case.get('name') or f"{case.get('prop')}={case.get('requested')}" for case in cases]


def as_layout(rows):
    return [(role, vtype, tuple(disks)) for role, vtype, disks in rows]


@pytest.mark.parametrize('case', CASES['validate_vdevs'], ids=ids(CASES['validate_vdevs']))
def test_validate_vdevs(case):
    if case['error'] is None:
        _zfs.validate_vdevs(case['vdevs'])
    else:
        with pytest.raises(_zfs.LayoutError) as exc:
            _zfs.validate_vdevs(case['vdevs'])
        assert str(exc.value).startswith(case['error'])


@pytest.mark.parametrize('case', CASES['requested_layout'], ids=ids(CASES['requested_layout']))
def test_requested_layout(case):
    assert _zfs.requested_layout(case['vdevs'], case['resolve'].get) == as_layout(case['layout'])


@pytest.mark.parametrize('case', CASES['plan_layout'], ids=ids(CASES['plan_layout']))
def test_plan_layout(case):
    missing, extra = _zfs.plan_layout(as_layout(case['actual']), as_layout(case['requested']))
    assert missing == as_layout(case['missing'])
    assert extra == as_layout(case['extra'])


@pytest.mark.parametrize('case', CASES['vdev_args'], ids=ids(CASES['vdev_args']))
def test_vdev_args(case):
    assert _zfs.vdev_args(as_layout(case['vdevs']), case['names']) == case['args']


@pytest.mark.parametrize('case', CASES['same_value'], ids=ids(CASES['same_value']))
def test_same_value(case):
    assert _zfs.same_value(case['prop'], case['requested'], case['current']) is case['same']


@pytest.mark.parametrize('case', CASES['mdadm_validate'], ids=ids(CASES['mdadm_validate']))
def test_mdadm_validate(case):
    if case['error'] is None:
        _mdadm.validate(case['params'])
    else:
        with pytest.raises(_mdadm.ArrayError) as exc:
            _mdadm.validate(case['params'])
        assert str(exc.value).startswith(case['error'])


@pytest.mark.parametrize('case', CASES['mdadm_plan_existing'], ids=ids(CASES['mdadm_plan_existing']))
def test_mdadm_plan_existing(case):
    args = (case['detail'], case['level'], case['devices'], case['spares'], case['grow'])
    if 'error' in case:
        with pytest.raises(_mdadm.ArrayError) as exc:
            _mdadm.plan_existing(*args)
        assert str(exc.value).startswith(case['error'])
    else:
        assert list(_mdadm.plan_existing(*args)) == case['plan']


def load_snapshot_tool():
    loader = importlib.machinery.SourceFileLoader('gpunas_zfs_snapshot', str(SNAPSHOT_TOOL))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize('case', CASES['snapshot_pruning'], ids=ids(CASES['snapshot_pruning']))
def test_snapshot_pruning(case):
    tool = load_snapshot_tool()
    assert tool.select_for_pruning(case['dataset'], case['prefix'], case['names'], case['keep']) == case['prune']
