# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers for ``nvidia-smi -q -x`` (XML) and the ``nvidia-smi topo -m`` matrix, and NVLink grouping.

All functions are pure. The driver-side view they produce has the same shape as the NVML
collector in ``_nvml.py``::

    {'driver_version': str, 'cuda_version': str | None, 'source': 'nvidia-smi',
     'gpus': [{'index', 'pci_address', 'uuid', 'name', 'architecture', 'memory_total_mib',
               'mig_mode_current', 'mig_mode_pending', 'mig_supported', 'virtualization_mode', 'mig_instances',
               'persistence_mode'}]}

``mig_supported`` is what the driver says: ``True`` when it reports a MIG mode, ``False`` when it
answers ``N/A`` (the board, or this VM's view of it, has no MIG), ``None`` when it does not say.
``virtualization_mode`` tells a bare-metal GPU (``none``) from one passed through to this VM
(``passthrough``), a vGPU seen from inside a guest (``vgpu``) and a GPU that hosts vGPUs
(``host_vgpu``; ``host_vsga`` for VMware vSGA); ``None`` when the driver does not say.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ansible_collections.gpunas.platform.plugins.module_utils import _pci

QUERY_ARGS = ['-q', '-x']
TOPOLOGY_ARGS = ['topo', '-m']

# <gpu_virtualization_mode><virtualization_mode> as nvidia-smi prints it -> the fact's value.
VIRTUALIZATION_MODES = {
    'None': 'none',
    'Pass-Through': 'passthrough',
    'VGPU': 'vgpu',
    'Host VGPU': 'host_vgpu',
    'Host VSGA': 'host_vsga',
}

_MIB = re.compile(r'^\s*(\d+)\s*MiB\s*$')
# Terminal control sequences (CSI: ESC [ parameters final-byte); drivers of 2026 underline the
# topo -m header row with ESC[4m ... ESC[0m whether or not stdout is a terminal.
_ANSI_CSI = re.compile(r'\x1b\[[0-9;?]*[@-~]')
_NVLINK = re.compile(r'^NV(\d+)$')


class NvidiaSmiParseError(ValueError):
    """Output that does not have the shape nvidia-smi documents."""


def _text(node, path):
    found = node.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if value in ('', 'N/A', '[N/A]') else value


def _mib(node, path):
    value = _text(node, path)
    match = _MIB.match(value) if value else None
    return int(match.group(1)) if match else None


def _int(node, path):
    value = _text(node, path)
    return int(value) if value is not None and value.isdigit() else None


def _mode(node, path):
    """``Enabled``/``Disabled`` -> lower case; ``N/A`` (no MIG on this board) -> None."""
    value = _text(node, path)
    return value.lower() if value else None


def _mig_supported(node):
    """``True``/``False`` from ``mig_mode/current_mig`` (a mode or ``N/A``); ``None`` when the element is absent."""
    found = node.find('mig_mode/current_mig')
    if found is None:
        return None
    return _mode(node, 'mig_mode/current_mig') is not None


def parse_query_xml(text):
    """Parse ``nvidia-smi -q -x`` into the driver-side view (GPUs in nvidia-smi's index order)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise NvidiaSmiParseError(f'nvidia-smi -q -x did not print XML: {exc}') from exc
    if root.tag != 'nvidia_smi_log':
        raise NvidiaSmiParseError(f'unexpected XML root element {root.tag!r}')
    driver_version = _text(root, 'driver_version')
    if driver_version is None:
        raise NvidiaSmiParseError('nvidia-smi -q -x has no driver_version')
    gpus = []
    for index, gpu in enumerate(root.findall('gpu')):
        bus_id = _text(gpu, 'pci/pci_bus_id') or gpu.get('id')
        try:
            pci_address = _pci.normalize_address(bus_id or '')
        except _pci.LspciParseError as exc:
            raise NvidiaSmiParseError(f'nvidia-smi -q -x: GPU {index} has no valid PCI bus id: {bus_id!r}') from exc
        instances = []
        for mig in gpu.findall('mig_devices/mig_device'):
            instances.append({
                'index': _int(mig, 'index'),
                'gpu_instance_id': _int(mig, 'gpu_instance_id'),
                'compute_instance_id': _int(mig, 'compute_instance_id'),
                'multiprocessor_count': _int(mig, 'device_attributes/shared/multiprocessor_count'),
                'memory_total_mib': _mib(mig, 'fb_memory_usage/total'),
            })
        gpus.append({
            'index': index,
            'pci_address': pci_address,
            'uuid': _text(gpu, 'uuid'),
            'name': _text(gpu, 'product_name'),
            'architecture': _text(gpu, 'product_architecture'),
            'memory_total_mib': _mib(gpu, 'fb_memory_usage/total'),
            'mig_mode_current': _mode(gpu, 'mig_mode/current_mig'),
            'mig_mode_pending': _mode(gpu, 'mig_mode/pending_mig'),
            'mig_supported': _mig_supported(gpu),
            'virtualization_mode': VIRTUALIZATION_MODES.get(_text(gpu, 'gpu_virtualization_mode/virtualization_mode')),
            'mig_instances': instances,
            'persistence_mode': _mode(gpu, 'persistence_mode'),
        })
    return {
        'source': 'nvidia-smi',
        'driver_version': driver_version,
        'cuda_version': _text(root, 'cuda_version'),
        'gpus': gpus,
    }


def parse_topology(text):
    """Parse the ``nvidia-smi topo -m`` matrix into ``{'GPU0': {'GPU1': 'NV12', ...}, ...}``.

    Only GPU rows are kept, and only their GPU columns. Columns are the header's device
    names (``GPU0``, ``NIC0``, ``mlx5_0``...) up to the affinity columns; the matrix ends at
    the first empty line (the legend follows it). Terminal escape codes are removed first.
    """
    lines = _ANSI_CSI.sub('', text).splitlines()
    header = None
    links = {}
    for line in lines:
        if not line.strip():
            if header is not None:
                break
            continue
        tokens = line.split()
        if header is None:
            header = []
            for token in tokens:
                if token in ('CPU', 'NUMA', 'GPU'):
                    break
                header.append(token)
            if not header or not header[0].startswith('GPU'):
                raise NvidiaSmiParseError(f'nvidia-smi topo -m: unexpected header {line!r}')
            continue
        row = tokens[0]
        if not re.match(r'^GPU\d+$', row):
            continue
        cells = tokens[1:1 + len(header)]
        if len(cells) < len(header):
            raise NvidiaSmiParseError(f'nvidia-smi topo -m: short row {line!r}')
        links[row] = {col: cell for col, cell in zip(header, cells) if col.startswith('GPU') and col != row}
    if header is None:
        raise NvidiaSmiParseError('nvidia-smi topo -m printed no matrix')
    return links


def nvlink_groups(links):
    """Connected groups of GPU indices joined by NVLink (``NV#`` cells), largest first.

    GPUs without NVLink do not appear. ``links`` maps ``GPUn`` to ``{GPUm: link type}`` as
    ``parse_topology`` returns it, or to ``{GPUm: 'NVLINK'}`` from NVML.
    """
    parent = {}

    def find(node):
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    linked = set()
    for row, cells in links.items():
        for col, kind in cells.items():
            if _NVLINK.match(kind) or kind == 'NVLINK':
                linked.update((row, col))
                parent[find(row)] = find(col)
    groups = {}
    for gpu in linked:
        groups.setdefault(find(gpu), []).append(int(gpu[3:]))
    return sorted((sorted(group) for group in groups.values()), key=lambda g: (-len(g), g))
