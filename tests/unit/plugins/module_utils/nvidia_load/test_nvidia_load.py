# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A failed modprobe is told apart from its recorded error texts: only nouveau and an unnamed cause
ask for a reboot; a refused signature, an unsupported GPU or missing firmware fail with the
kernel's words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.gpunas.platform.plugins.module_utils import _nvidia_load

HERE = Path(__file__).parent
FIXTURES = HERE.parents[2] / 'fixtures' / 'gpu' / 'modprobe'
CASES = yaml.safe_load((HERE / 'load_failure_cases.yml').read_text())


def fixture(name):
    return (FIXTURES / name).read_text() if name else ''


@pytest.mark.parametrize('case', CASES, ids=[c['id'] for c in CASES])
def test_classify_load_failure(case):
    outcome = _nvidia_load.classify_load_failure(
        fixture(case['stderr']), fixture(case.get('kernel_log')), case['gpu_present'])
    assert outcome['status'] == case['status']
    for words in case['reason']:
        assert words in outcome['reason']


def test_every_fixture_has_its_source():
    for path in FIXTURES.glob('*.txt'):
        meta = yaml.safe_load(path.with_name(path.name + '.meta.yml').read_text())
        assert meta['source'], path.name


def test_kernel_log_lines_lose_their_timestamps_and_keep_the_newest():
    log = '\n'.join(f'[ {n}.000000] NVRM: line {n}' for n in range(12)) + '\n[ 13.0] usb 1-1: new device'
    assert _nvidia_load.driver_lines(log, limit=3) == ['NVRM: line 9', 'NVRM: line 10', 'NVRM: line 11']
