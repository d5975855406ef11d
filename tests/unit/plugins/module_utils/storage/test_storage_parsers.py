# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers and the disk assessment on real captured outputs (cases in parser_cases.yml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.gpunas.platform.plugins.module_utils import _blockdev, _mdadm, _zfs

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parents[2] / 'fixtures' / 'storage'
CASES = yaml.safe_load((HERE / 'parser_cases.yml').read_text())
MODULES = {'_blockdev': _blockdev, '_zfs': _zfs, '_mdadm': _mdadm}


def fixture(name):
    return (FIXTURES / name).read_text() if name else ''


def plain(value):
    """Tuples to lists so parsed values compare with YAML."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


@pytest.mark.parametrize('case', CASES['parsers'], ids=[case['name'] for case in CASES['parsers']])
def test_parser(case):
    module, function = case['parser'].split('.')
    parsed = plain(getattr(MODULES[module], function)(fixture(case['fixture'])))
    if 'expect' in case:
        assert parsed == case['expect']
    for key, value in case.get('expect_subset', {}).items():
        assert parsed[key] == value, key


@pytest.mark.parametrize('case', CASES['assess'], ids=[case['name'] for case in CASES['assess']])
def test_assess(case):
    findings = _blockdev.assess(
        _blockdev.parse_lsblk(fixture(case['lsblk'])) if case.get('lsblk') else [],
        _blockdev.parse_key_values(fixture(case.get('blkid'))),
        _blockdev.parse_wipefs(fixture(case.get('wipefs'))),
        _blockdev.parse_key_values(fixture(case.get('mdadm'))),
        _blockdev.parse_zdb_labels(fixture(case.get('zdb'))),
        case.get('holders', []),
    )
    assert findings == case['findings']


def test_conf_line_names_the_array_not_its_md_number():
    """mdadm.conf must name /dev/md/<name>: --detail --scan prints /dev/md127 until udev makes the link."""
    detail = _mdadm.parse_detail(fixture('vm/mdadm-detail-export.assembled.txt'))
    assert _mdadm.conf_line(detail) == (
        'ARRAY /dev/md/data metadata=1.2 UUID=11788a0d:c37b8f52:da80ddf5:7c088980 name=testhost:data')
