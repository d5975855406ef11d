# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device-id table covers the required models; unknown ids still describe correctly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.gpunas.platform.plugins.module_utils import _gpu_models

CASES = yaml.safe_load((Path(__file__).parent / 'models_cases.yml').read_text())


@pytest.mark.parametrize('case', CASES['known'], ids=[c['model'] for c in CASES['known']])
def test_required_models_are_in_the_table(case):
    described = _gpu_models.describe(case['id'].upper(), 'ignored lspci name')
    assert described == {
        'model': case['model'],
        'architecture': case['architecture'],
        'memory_gib': case['memory_gib'],
        'mig_profiles': case['mig'],
        'mig_supported': bool(case['mig']),
        'vgpu_supported': case['vgpu'],
        'known_model': True,
    }


@pytest.mark.parametrize('case', CASES['unknown'], ids=[c['id'] for c in CASES['unknown']])
def test_unknown_ids_get_a_generic_entry_from_the_lspci_name(case):
    assert _gpu_models.describe(case['id'], case['lspci_name']) == {
        'model': case['model'],
        'architecture': case['architecture'],
        'memory_gib': None,
        'mig_profiles': [],
        'mig_supported': None,
        'vgpu_supported': None,
        'known_model': False,
    }


def test_describe_returns_copies_not_the_table():
    described = _gpu_models.describe('20b0', '')
    described['mig_profiles'].append('changed')
    assert 'changed' not in _gpu_models.GPU_MODELS['20b0']['mig_profiles']


def _local_nvidia_pci_ids():
    """``{device id: name}`` of vendor 10de from the pci.ids database pciutils installed, if any."""
    path = Path('/usr/share/misc/pci.ids')
    if not path.exists():
        pytest.skip('no pci.ids on this machine')
    names = {}
    in_nvidia = False
    for line in path.read_text(encoding='utf-8', errors='replace').splitlines():
        if line.startswith('10de '):
            in_nvidia = True
        elif in_nvidia and line[:1] not in ('\t', '#', ''):
            break
        elif in_nvidia and line.startswith('\t') and not line.startswith('\t\t'):
            device_id, _sep, name = line.strip().partition(' ')
            names[device_id] = name.strip()
    return names


def test_table_agrees_with_the_real_pci_ids_database():
    """Every table id that pci.ids knows has the architecture its chip code name says."""
    names = _local_nvidia_pci_ids()
    checked = 0
    for device_id, entry in _gpu_models.GPU_MODELS.items():
        if device_id in names:
            assert _gpu_models.architecture_from_name(names[device_id]) == entry['architecture'], device_id
            checked += 1
    for device_id, model in _gpu_models.NVSWITCH_MODELS.items():
        if device_id in names:
            assert model in names[device_id], device_id
            checked += 1
    assert checked >= 10
