# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NVML collector against a stand-in of the pynvml interface fed from a real capture (nvml_cases.yml)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.gpunas.platform.plugins.module_utils import _nvidia_smi, _nvml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import fake_pynvml  # noqa: E402

FIXTURES = HERE.parents[2] / 'fixtures' / 'gpu'
CASES = yaml.safe_load((HERE / 'nvml_cases.yml').read_text())


@pytest.mark.parametrize('case', CASES, ids=[c['fixture'] for c in CASES])
def test_collect(case):
    nvml = fake_pynvml.FakeNvml((FIXTURES / case['fixture']).read_text())
    assert _nvml.collect(nvml) == case['expected']
    assert nvml.calls == ['nvmlInit', 'nvmlShutdown']


@pytest.mark.parametrize('case', CASES, ids=[c['fixture'] for c in CASES])
def test_nvml_and_nvidia_smi_agree_on_the_same_machine(case):
    text = (FIXTURES / case['fixture']).read_text()
    from_nvml = _nvml.collect(fake_pynvml.FakeNvml(text))
    from_smi = _nvidia_smi.parse_query_xml(text)
    for nvml_gpu, smi_gpu in zip(from_nvml['gpus'], from_smi['gpus']):
        assert {k: v for k, v in nvml_gpu.items() if k != 'architecture'} == \
            {k: v for k, v in smi_gpu.items() if k != 'architecture'}
    assert (from_nvml['driver_version'], from_nvml['cuda_version']) == \
        (from_smi['driver_version'], from_smi['cuda_version'])


def test_init_failure_propagates_and_nothing_else_is_called():
    nvml = fake_pynvml.FakeNvml((FIXTURES / CASES[0]['fixture']).read_text(),
                                fail_init=fake_pynvml.NVMLError_LibraryNotFound('NVML Shared Library Not Found'))
    with pytest.raises(fake_pynvml.NVMLError_LibraryNotFound):
        _nvml.collect(nvml)
    assert nvml.calls == ['nvmlInit']


def test_links_from_peers_direct_and_through_a_switch():
    gpus = [{'index': i, 'pci_address': '0000:%02x:00.0' % (i + 1)} for i in range(3)]
    peers = {0: {'0000:02:00.0'}, 1: set(), 2: {'0000:aa:00.0'}}
    assert _nvml._links_from_peers(gpus, peers) == {'GPU0': {'GPU1': 'NVLINK'}, 'GPU1': {'GPU0': 'NVLINK'}}
    peers = {0: {'0000:aa:00.0'}, 1: {'0000:aa:00.0'}, 2: set()}
    assert _nvidia_smi.nvlink_groups(_nvml._links_from_peers(gpus, peers)) == [[0, 1]]


def test_the_stand_in_only_uses_names_the_real_pynvml_has():
    pynvml = pytest.importorskip('pynvml')
    used = [name for name in dir(fake_pynvml.FakeNvml) if name.startswith(('nvml', 'NVML'))]
    assert used
    assert [name for name in used if not hasattr(pynvml, name)] == []
    constants = ('NVML_DEVICE_MIG_DISABLE', 'NVML_DEVICE_MIG_ENABLE', 'NVML_FEATURE_ENABLED', 'NVML_NVLINK_MAX_LINKS',
                 'NVML_GPU_VIRTUALIZATION_MODE_NONE', 'NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH',
                 'NVML_GPU_VIRTUALIZATION_MODE_VGPU', 'NVML_GPU_VIRTUALIZATION_MODE_HOST_VGPU',
                 'NVML_GPU_VIRTUALIZATION_MODE_HOST_VSGA')
    for name in constants:
        assert getattr(pynvml, name) == getattr(fake_pynvml, name), name


def test_real_pynvml_without_a_driver_is_reported_not_raised():
    """On a machine without the NVIDIA library (like CI), the real nvidia-ml-py fails nvmlInit cleanly."""
    pynvml = pytest.importorskip('pynvml')
    from ansible_collections.gpunas.platform.plugins.modules import gpu_facts
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip('this machine has a working NVIDIA driver')
    view, error = gpu_facts.query_nvml(pynvml)
    assert view is None
    assert error.startswith('NVML: ')
