# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nvidia-smi -q -x and topo -m parsers against real outputs (cases in nvidia_smi_cases.yml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.gpunas.platform.plugins.module_utils import _nvidia_smi

HERE = Path(__file__).parent
FIXTURES = HERE.parents[2] / 'fixtures' / 'gpu'
CASES = yaml.safe_load((HERE / 'nvidia_smi_cases.yml').read_text())


@pytest.mark.parametrize('case', CASES['query_xml'], ids=[c['fixture'] for c in CASES['query_xml']])
def test_parse_query_xml(case):
    assert _nvidia_smi.parse_query_xml((FIXTURES / case['fixture']).read_text()) == case['expected']


@pytest.mark.parametrize('case', CASES['topology'], ids=[c['fixture'] for c in CASES['topology']])
def test_parse_topology_and_nvlink_groups(case):
    links = _nvidia_smi.parse_topology((FIXTURES / case['fixture']).read_text())
    names = [f'GPU{i}' for i in range(case['gpus'])]
    assert sorted(links) == sorted(names)
    for row, cells in links.items():
        assert sorted(cells) == sorted(name for name in names if name != row)
    for row, cells in case['sample'].items():
        for col, kind in cells.items():
            assert links[row][col] == kind
    assert _nvidia_smi.nvlink_groups(links) == case['nvlink_groups']


def test_every_fixture_has_provenance():
    for fixture in list((FIXTURES / 'nvidia_smi').glob('*.xml')) + list((FIXTURES / 'topo').glob('*.txt')):
        meta = yaml.safe_load(Path(str(fixture) + '.meta.yml').read_text())
        assert meta['tool'].startswith('nvidia-smi') and meta['source'] and meta['gpu_model'], fixture.name


@pytest.mark.parametrize('text, message', [
    ('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.', 'did not print XML'),
    ('<?xml version="1.0" ?><other/>', 'unexpected XML root'),
    ('<?xml version="1.0" ?><nvidia_smi_log></nvidia_smi_log>', 'no driver_version'),
])
def test_parse_query_xml_refuses_what_is_not_a_query_log(text, message):
    with pytest.raises(_nvidia_smi.NvidiaSmiParseError, match=message):
        _nvidia_smi.parse_query_xml(text)


def test_parse_topology_refuses_empty_output():
    with pytest.raises(_nvidia_smi.NvidiaSmiParseError, match='no matrix'):
        _nvidia_smi.parse_topology('\n')


def test_nvlink_groups_join_transitively_and_sort_largest_first():
    links = {'GPU0': {'GPU1': 'NV4'}, 'GPU1': {'GPU2': 'NV4'}, 'GPU3': {'GPU4': 'NV2'}, 'GPU5': {'GPU6': 'SYS'}}
    assert _nvidia_smi.nvlink_groups(links) == [[0, 1, 2], [3, 4]]


def test_a_malformed_pci_bus_id_is_a_parse_error_that_names_it():
    """The real Blackwell capture with its bus id cut short, as a driver printing garbage would leave it."""
    text = (FIXTURES / 'nvidia_smi' / 'rtx-pro-6000-blackwell-maxq-590.44.01.xml').read_text()
    broken = text.replace('<pci_bus_id>00000000:61:00.0</pci_bus_id>', '<pci_bus_id>00000000:61:00</pci_bus_id>')
    assert broken != text
    with pytest.raises(_nvidia_smi.NvidiaSmiParseError, match="GPU 0 has no valid PCI bus id: '00000000:61:00'"):
        _nvidia_smi.parse_query_xml(broken)
