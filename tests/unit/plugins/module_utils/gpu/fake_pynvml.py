# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in for the ``pynvml`` module interface whose values all come from a real ``nvidia-smi -q -x`` capture.

Only the functions, constants and exception classes ``_nvml.collect`` uses exist here; the
tests check each of those names against the real ``pynvml`` when it is installed. Nothing is
invented: every number and string below is read from the XML fixture.
"""

from __future__ import annotations

import types
import xml.etree.ElementTree as ET

NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_NVLINK_MAX_LINKS = 36
NVML_GPU_VIRTUALIZATION_MODE_NONE = 0
NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH = 1
NVML_GPU_VIRTUALIZATION_MODE_VGPU = 2
NVML_GPU_VIRTUALIZATION_MODE_HOST_VGPU = 3
NVML_GPU_VIRTUALIZATION_MODE_HOST_VSGA = 4
# nvidia-smi prints NVML's virtualization mode under these names (nvidia-smi -q -x, virtualization_mode).
_VIRTUALIZATION_BY_NAME = {
    'None': NVML_GPU_VIRTUALIZATION_MODE_NONE,
    'Pass-Through': NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH,
    'VGPU': NVML_GPU_VIRTUALIZATION_MODE_VGPU,
    'Host VGPU': NVML_GPU_VIRTUALIZATION_MODE_HOST_VGPU,
    'Host VSGA': NVML_GPU_VIRTUALIZATION_MODE_HOST_VSGA,
}
MIB = 1024 * 1024


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NotFound(NVMLError):
    pass


class NVMLError_InvalidArgument(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


def _text(node, path):
    return node.find(path).text.strip()


def _mib(node, path):
    return int(_text(node, path).split()[0])


class FakeNvml:
    """Answers NVML calls from one ``nvidia-smi -q -x`` document; records which calls were made."""

    NVML_DEVICE_MIG_DISABLE = NVML_DEVICE_MIG_DISABLE
    NVML_DEVICE_MIG_ENABLE = NVML_DEVICE_MIG_ENABLE
    NVML_FEATURE_ENABLED = NVML_FEATURE_ENABLED
    NVML_NVLINK_MAX_LINKS = NVML_NVLINK_MAX_LINKS
    NVML_GPU_VIRTUALIZATION_MODE_NONE = NVML_GPU_VIRTUALIZATION_MODE_NONE
    NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH = NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH
    NVML_GPU_VIRTUALIZATION_MODE_VGPU = NVML_GPU_VIRTUALIZATION_MODE_VGPU
    NVML_GPU_VIRTUALIZATION_MODE_HOST_VGPU = NVML_GPU_VIRTUALIZATION_MODE_HOST_VGPU
    NVML_GPU_VIRTUALIZATION_MODE_HOST_VSGA = NVML_GPU_VIRTUALIZATION_MODE_HOST_VSGA
    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NotFound = NVMLError_NotFound
    NVMLError_InvalidArgument = NVMLError_InvalidArgument

    def __init__(self, xml_text, fail_init=None):
        self.root = ET.fromstring(xml_text)
        self.gpus = self.root.findall('gpu')
        self.fail_init = fail_init
        self.calls = []

    def _log(self, name):
        self.calls.append(name)

    def nvmlInit(self):
        self._log('nvmlInit')
        if self.fail_init is not None:
            raise self.fail_init

    def nvmlShutdown(self):
        self._log('nvmlShutdown')

    def nvmlSystemGetDriverVersion(self):
        return _text(self.root, 'driver_version')

    def nvmlSystemGetCudaDriverVersion(self):
        major, minor = _text(self.root, 'cuda_version').split('.')
        return int(major) * 1000 + int(minor) * 10

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return ('gpu', self.gpus[index])

    def nvmlDeviceGetName(self, handle):
        return _text(handle[1], 'product_name')

    def nvmlDeviceGetUUID(self, handle):
        return _text(handle[1], 'uuid')

    def nvmlDeviceGetPciInfo(self, handle):
        return types.SimpleNamespace(busId=_text(handle[1], 'pci/pci_bus_id').encode('ascii'))

    def nvmlDeviceGetMemoryInfo(self, handle):
        return types.SimpleNamespace(total=_mib(handle[1], 'fb_memory_usage/total') * MIB)

    def nvmlDeviceGetMigMode(self, handle):
        current = _text(handle[1], 'mig_mode/current_mig')
        if current == 'N/A':
            raise NVMLError_NotSupported()
        pending = _text(handle[1], 'mig_mode/pending_mig')
        return [int(current == 'Enabled'), int(pending == 'Enabled')]

    def nvmlDeviceGetVirtualizationMode(self, handle):
        return _VIRTUALIZATION_BY_NAME[_text(handle[1], 'gpu_virtualization_mode/virtualization_mode')]

    def nvmlDeviceGetPersistenceMode(self, handle):
        return int(_text(handle[1], 'persistence_mode') == 'Enabled')

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        # An A100 has 7 MIG slots (MIG User Guide); the capture fills two, NVML answers NotFound for the rest.
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index):
        devices = handle[1].findall('mig_devices/mig_device')
        if index >= len(devices):
            raise NVMLError_NotFound()
        return ('mig', devices[index])

    def nvmlDeviceGetGpuInstanceId(self, handle):
        return int(_text(handle[1], 'gpu_instance_id'))

    def nvmlDeviceGetComputeInstanceId(self, handle):
        return int(_text(handle[1], 'compute_instance_id'))

    def nvmlDeviceGetAttributes(self, handle):
        return types.SimpleNamespace(
            multiprocessorCount=int(_text(handle[1], 'device_attributes/shared/multiprocessor_count')))

    def nvmlDeviceGetNvLinkState(self, handle, link):
        # The captured board reports no NVLink section: NVML answers NotSupported on such boards.
        raise NVMLError_NotSupported()

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle, link):
        raise NVMLError_NotSupported()
