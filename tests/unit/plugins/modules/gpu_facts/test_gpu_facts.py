# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpu_facts module, driven by cases.yml: exact command sequences, recorded outputs, expected facts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpunas.platform.plugins.module_utils import _nvidia_smi, _nvml
from ansible_collections.gpunas.platform.plugins.modules import gpu_facts

HERE = Path(__file__).parent
FIXTURES = HERE.parents[2] / 'fixtures' / 'gpu'
sys.path.insert(0, str(HERE.parents[1] / 'module_utils' / 'gpu'))
import fake_pynvml  # noqa: E402

CASES = yaml.safe_load((HERE / 'cases.yml').read_text())


class Exited(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


class Failed(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


def build_sysfs(root, devices):
    """A sysfs-shaped tree: bus/pci/devices/<addr>/{numa_node, iommu_group ->, driver ->}."""
    for address, facts in (devices or {}).items():
        dev = root / 'bus' / 'pci' / 'devices' / address
        dev.mkdir(parents=True)
        if 'numa_node' in facts:
            (dev / 'numa_node').write_text(f"{facts['numa_node']}\n")
        if 'iommu_group' in facts:
            group = root / 'kernel' / 'iommu_groups' / str(facts['iommu_group'])
            group.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(group, dev), dev / 'iommu_group')
        if 'driver' in facts:
            driver = root / 'bus' / 'pci' / 'drivers' / facts['driver']
            driver.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(driver, dev), dev / 'driver')


def exit_json(**result):
    raise Exited(result)


def fail_json(**result):
    raise Failed(result)


def run_case(case, tmp_path):
    build_sysfs(tmp_path, case.get('sysfs'))
    expected = list(case.get('commands') or [])
    ran = []

    def run_command(self, argv, **kwargs):
        assert kwargs.get('environ_update') == {'LC_ALL': 'C', 'LANG': 'C'}
        assert expected, f'unexpected command {argv!r}'
        step = expected.pop(0)
        assert argv == step['argv']
        ran.append(argv)
        stdout = (FIXTURES / step['stdout']).read_text() if 'stdout' in step else ''
        return step.get('rc', 0), stdout, ''

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return case['binaries'].get(name)

    nvml_case = case.get('pynvml')
    nvml = None
    if nvml_case:
        failure = nvml_case.get('fail_init')
        nvml = fake_pynvml.FakeNvml((FIXTURES / nvml_case['fixture']).read_text(),
                                    fail_init=fake_pynvml.NVMLError_LibraryNotFound(failure) if failure else None)

    params = dict(case.get('params') or {}, sysfs_root=str(tmp_path))
    with patch_module_args(params), \
            mock.patch.object(basic.AnsibleModule, 'run_command', run_command), \
            mock.patch.object(basic.AnsibleModule, 'get_bin_path', get_bin_path), \
            mock.patch.object(basic.AnsibleModule, 'exit_json', side_effect=exit_json), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', side_effect=fail_json), \
            mock.patch.object(_nvml, 'import_pynvml', return_value=nvml), \
            pytest.raises((Exited, Failed)) as outcome:
        gpu_facts.main()
    assert expected == [], f'commands not run: {expected!r}'
    return outcome.value, ran, nvml


@pytest.mark.parametrize('case', CASES, ids=[c['name'] for c in CASES])
def test_gpu_facts(case, tmp_path):
    outcome, ran, nvml = run_case(case, tmp_path)
    if 'failed' in case:
        assert isinstance(outcome, Failed), outcome.result
        assert case['failed'] in outcome.result['msg']
        return
    assert isinstance(outcome, Exited), outcome.result
    result = outcome.result
    assert result['changed'] is False
    assert result['commands'] == ran
    facts = result['ansible_facts']
    for key, value in (case.get('facts') or {}).items():
        assert facts[key] == value, key
    if 'gpus' in case:
        assert len(facts['gpunas_gpus']) == len(case['gpus'])
        for gpu, wanted in zip(facts['gpunas_gpus'], case['gpus']):
            for key, value in wanted.items():
                assert gpu[key] == value, f"{gpu['pci_address']} {key}"
    nvml_used = nvml is not None and (case.get('params') or {}).get('use_nvml', True)
    if nvml_used and not case['pynvml'].get('fail_init'):
        assert nvml.calls == ['nvmlInit', 'nvmlShutdown']
    elif nvml is not None and not nvml_used:
        assert nvml.calls == []


def test_every_gpu_has_the_documented_keys(tmp_path):
    case = next(c for c in CASES if c['name'].startswith('passthrough host'))
    outcome, _ran, _nvml = run_case(case, tmp_path)
    documented = yaml.safe_load(gpu_facts.RETURN)['ansible_facts']['contains']
    facts = outcome.result['ansible_facts']
    assert sorted(facts) == sorted(documented)
    assert sorted(facts['gpunas_gpus'][0]) == sorted(documented['gpunas_gpus']['sample'][0])


def test_the_driver_names_a_board_the_table_and_pci_ids_do_not_know(tmp_path):
    """The real RTX PRO 6000 Blackwell capture against the lspci record of a board pci.ids predates.

    lspci prints such a board as ``"Device [2bb4]"`` (see models_cases.yml); the record below carries
    the ids the driver itself reports for the board (pci_device_id 2BB410DE, subsystem 204C10DE).
    """
    capture = FIXTURES / 'nvidia_smi' / 'rtx-pro-6000-blackwell-maxq-590.44.01.xml'
    view = _nvidia_smi.parse_query_xml(capture.read_text())
    gpu = gpu_facts.pci_gpu({'pci_address': '0000:61:00.0', 'vendor_id': '10de', 'device_id': '2bb4',
                             'subsystem_vendor_id': '10de', 'subsystem_device_id': '204c', 'revision': 'a1',
                             'device_name': 'Device'}, str(tmp_path))
    assert (gpu['model'], gpu['architecture'], gpu['mig_supported'], gpu['vgpu_supported']) == \
        ('NVIDIA device 2bb4', None, None, None)
    gpu_facts.merge_driver_view([gpu], view)
    assert (gpu['model'], gpu['architecture'], gpu['mig_supported'], gpu['vgpu_supported']) == \
        ('NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition', 'Blackwell', False, None)
    assert gpu['driver_name'] == gpu['model']
    assert gpu['virtualization_mode'] == 'none'


def test_a_malformed_bus_id_from_nvml_is_reported_not_raised():
    """NVML answering with a bus id that is not one (the real Blackwell capture's, cut short) degrades the fact."""
    text = (FIXTURES / 'nvidia_smi' / 'rtx-pro-6000-blackwell-maxq-590.44.01.xml').read_text()
    nvml = fake_pynvml.FakeNvml(text.replace('00000000:61:00.0</pci_bus_id>', '00000000:61:00</pci_bus_id>'))
    view, error = gpu_facts.query_nvml(nvml)
    assert view is None
    assert error == "NVML: GPU 0 has no valid PCI bus id: '00000000:61:00'"
    assert nvml.calls == ['nvmlInit', 'nvmlShutdown']


def _stand_in(directory, name, body):
    path = directory / name
    path.write_text(f'#!/bin/sh\n{body}\n')
    path.chmod(0o755)
    return path


def _run_for_real(params, bin_dir, monkeypatch):
    """The module with its real run_command and get_bin_path, finding stand-ins in bin_dir first."""
    monkeypatch.setenv('PATH', f"{bin_dir}:{os.environ['PATH']}")
    started = time.monotonic()
    with patch_module_args(params), \
            mock.patch.object(basic.AnsibleModule, 'exit_json', side_effect=exit_json), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', side_effect=fail_json), \
            mock.patch.object(_nvml, 'import_pynvml', return_value=None), \
            pytest.raises((Exited, Failed)) as outcome:
        gpu_facts.main()
    return outcome.value, time.monotonic() - started


def test_a_hung_nvidia_smi_is_killed_at_command_timeout_and_reported(tmp_path, monkeypatch):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    _stand_in(bin_dir, 'lspci', f"exec cat {FIXTURES / 'lspci' / 'a100pcie40gb-rtx5090.mmnn.txt'}")
    smi = _stand_in(bin_dir, 'nvidia-smi', 'exec sleep 60')
    outcome, elapsed = _run_for_real({'command_timeout': 1, 'sysfs_root': str(tmp_path / 'sys')}, bin_dir, monkeypatch)
    assert isinstance(outcome, Exited), outcome.result
    assert elapsed < 10
    facts = outcome.result['ansible_facts']
    assert facts['gpunas_gpu_count'] == 2
    assert facts['gpunas_gpu_driver']['present'] is False
    assert facts['gpunas_gpu_driver']['error'] == f'{smi} -q -x did not finish within 1 s and was killed'
    assert outcome.result['commands'][-1] == [str(smi), '-q', '-x']


def test_a_hung_lspci_fails_the_module_at_command_timeout(tmp_path, monkeypatch):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    lspci = _stand_in(bin_dir, 'lspci', 'exec sleep 60')
    outcome, elapsed = _run_for_real({'command_timeout': 1}, bin_dir, monkeypatch)
    assert isinstance(outcome, Failed), outcome.result
    assert elapsed < 10
    assert outcome.result['msg'] == f'{lspci} -D -mm -nn -d 10de: did not finish within 1 s and was killed'


def test_documented_options_are_the_argument_spec():
    documented = yaml.safe_load(gpu_facts.DOCUMENTATION)['options']
    assert documented['command_timeout'] == {
        'description': documented['command_timeout']['description'], 'type': 'int', 'default': 30}


def test_a_hung_topo_m_keeps_the_driver_facts_and_reports_the_timeout(tmp_path, monkeypatch):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    _stand_in(bin_dir, 'lspci', f"exec cat {FIXTURES / 'lspci' / 'a100pcie40gb-rtx5090.mmnn.txt'}")
    query = FIXTURES / 'nvidia_smi' / 'v100s-pcie-32gb-x8-460.73.01.xml'
    smi = _stand_in(bin_dir, 'nvidia-smi', f'if [ "$1" = -q ]; then exec cat {query}; fi\nexec sleep 60')
    outcome, elapsed = _run_for_real({'command_timeout': 1, 'sysfs_root': str(tmp_path / 'sys')}, bin_dir, monkeypatch)
    assert isinstance(outcome, Exited), outcome.result
    assert elapsed < 10
    facts = outcome.result['ansible_facts']
    assert facts['gpunas_gpu_driver'] == {
        'present': True, 'source': 'nvidia-smi', 'version': '460.73.01', 'cuda_version': '11.2',
        'error': f'{smi} topo -m did not finish within 1 s and was killed'}
    assert facts['gpunas_nvlink_groups'] == []
    assert outcome.result['commands'][1:] == [[str(smi), '-q', '-x'], [str(smi), 'topo', '-m']]
