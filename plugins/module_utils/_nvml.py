# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Driver-side GPU facts through NVML (the ``pynvml`` module of the ``nvidia-ml-py`` package).

``collect`` takes the imported ``pynvml`` module as a parameter, so it runs against the real
library on a GPU host and against a stand-in of the same interface in unit tests. It returns
the same shape as ``_nvidia_smi.parse_query_xml`` plus ``links`` for NVLink grouping.
Everything here only reads: no NVML setter is called.
"""

from __future__ import annotations

from ansible_collections.gpunas.platform.plugins.module_utils import _pci

MIB = 1024 * 1024


class NvmlDataError(ValueError):
    """NVML answered with something that is not what it documents (a bus id that is no PCI address)."""


def _address(bus_id, what):
    """NVML's ``busId`` (bytes or str) as a PCI address; anything else is an ``NvmlDataError``."""
    text = _str(bus_id)
    try:
        return _pci.normalize_address(text)
    except _pci.LspciParseError as exc:
        raise NvmlDataError(f'{what} has no valid PCI bus id: {text!r}') from exc


def import_pynvml():
    """The ``pynvml`` module, or None when nvidia-ml-py is not installed on the target."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _str(value):
    return value.decode('ascii', 'replace') if isinstance(value, bytes) else value


def _cuda_version(number):
    """NVML's CUDA driver version integer (``11060``) -> ``'11.6'``."""
    return f'{number // 1000}.{(number % 1000) // 10}'


def _mig_mode(nvml, handle):
    """``(current, pending, supported)``: NotSupported means the driver says this GPU has no MIG."""
    try:
        current, pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError_NotSupported:
        return None, None, False
    names = {nvml.NVML_DEVICE_MIG_ENABLE: 'enabled', nvml.NVML_DEVICE_MIG_DISABLE: 'disabled'}
    return names.get(current), names.get(pending), True


def _virtualization_mode(nvml, handle):
    """The same names as ``_nvidia_smi.VIRTUALIZATION_MODES``; None when the driver cannot say."""
    names = {
        nvml.NVML_GPU_VIRTUALIZATION_MODE_NONE: 'none',
        nvml.NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH: 'passthrough',
        nvml.NVML_GPU_VIRTUALIZATION_MODE_VGPU: 'vgpu',
        nvml.NVML_GPU_VIRTUALIZATION_MODE_HOST_VGPU: 'host_vgpu',
        nvml.NVML_GPU_VIRTUALIZATION_MODE_HOST_VSGA: 'host_vsga',
    }
    try:
        return names.get(nvml.nvmlDeviceGetVirtualizationMode(handle))
    except nvml.NVMLError_NotSupported:
        return None


def _mig_instances(nvml, handle):
    instances = []
    for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError_NotFound:
            continue
        attributes = nvml.nvmlDeviceGetAttributes(mig)
        instances.append({
            'index': slot,
            'gpu_instance_id': nvml.nvmlDeviceGetGpuInstanceId(mig),
            'compute_instance_id': nvml.nvmlDeviceGetComputeInstanceId(mig),
            'multiprocessor_count': attributes.multiprocessorCount,
            'memory_total_mib': nvml.nvmlDeviceGetMemoryInfo(mig).total // MIB,
        })
    return instances


def _nvlink_peers(nvml, handle):
    """PCI addresses at the far end of each active NVLink (a GPU or an NVSwitch)."""
    peers = set()
    for link in range(nvml.NVML_NVLINK_MAX_LINKS):
        try:
            if nvml.nvmlDeviceGetNvLinkState(handle, link) != nvml.NVML_FEATURE_ENABLED:
                continue
            remote = nvml.nvmlDeviceGetNvLinkRemotePciInfo(handle, link)
        except (nvml.NVMLError_NotSupported, nvml.NVMLError_InvalidArgument):
            break
        peers.add(_address(remote.busId, f'the far end of NVLink {link}'))
    return peers


def collect(nvml):
    """Read driver and per-GPU facts through NVML; ``links`` joins GPUs sharing NVLink peers."""
    nvml.nvmlInit()
    try:
        gpus = []
        peers = {}
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            current, pending, mig_supported = _mig_mode(nvml, handle)
            address = _address(nvml.nvmlDeviceGetPciInfo(handle).busId, f'GPU {index}')
            gpus.append({
                'index': index,
                'pci_address': address,
                'uuid': _str(nvml.nvmlDeviceGetUUID(handle)),
                'name': _str(nvml.nvmlDeviceGetName(handle)),
                'architecture': None,
                'memory_total_mib': nvml.nvmlDeviceGetMemoryInfo(handle).total // MIB,
                'mig_mode_current': current,
                'mig_mode_pending': pending,
                'mig_supported': mig_supported,
                'virtualization_mode': _virtualization_mode(nvml, handle),
                'mig_instances': _mig_instances(nvml, handle) if current == 'enabled' else [],
                'persistence_mode': 'enabled' if nvml.nvmlDeviceGetPersistenceMode(handle) == nvml.NVML_FEATURE_ENABLED
                else 'disabled',
            })
            peers[index] = _nvlink_peers(nvml, handle)
        result = {
            'source': 'nvml',
            'driver_version': _str(nvml.nvmlSystemGetDriverVersion()),
            'cuda_version': _cuda_version(nvml.nvmlSystemGetCudaDriverVersion()),
            'gpus': gpus,
        }
    finally:
        nvml.nvmlShutdown()
    result['links'] = _links_from_peers(gpus, peers)
    return result


def _links_from_peers(gpus, peers):
    """GPUs are NVLink-joined when one links to the other or both link to a common NVSwitch."""
    address_to_index = {gpu['pci_address']: gpu['index'] for gpu in gpus}
    links = {}
    for a, a_peers in peers.items():
        for b, b_peers in peers.items():
            if a == b:
                continue
            direct = gpus[b]['pci_address'] in a_peers or gpus[a]['pci_address'] in b_peers
            switches = (a_peers & b_peers) - set(address_to_index)
            if direct or switches:
                links.setdefault(f'GPU{a}', {})[f'GPU{b}'] = 'NVLINK'
    return links
