# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI discovery: parse ``lspci -D -mm -nn -d 10de:`` and read per-device facts from sysfs.

``lspci -mm`` is lspci's machine-readable format: one device per line, the slot followed by
quoted fields (class, vendor, device, then ``-rXX`` revision and ``-pXX`` prog-if options,
then subsystem vendor and device, which may be empty strings). With ``-nn`` every name ends
in its numeric id in brackets: ``"NVIDIA Corporation [10de]"``. ``-d 10de:`` asks only for
NVIDIA devices: on a host without any, lspci never loads its name database, which is most of
its run time.

Parsing is pure. ``read_sysfs`` is the only function that touches the file system; its root
is a parameter so tests and chroots can point it elsewhere.
"""

from __future__ import annotations

import os
import re
import shlex

from ansible_collections.gpunas.platform.plugins.module_utils import _gpu_models

LSPCI_ARGS = ['-D', '-mm', '-nn', '-d', f'{_gpu_models.NVIDIA_VENDOR_ID}:']

_NAME_ID = re.compile(r'^(?P<name>.*?)\s*\[(?P<id>[0-9a-fA-F]{4})\]$')
_SLOT = re.compile(r'^(?:(?P<domain>[0-9a-fA-F]{4,}):)?(?P<bdf>[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])$')

# PCI base class 03 = display controller (VGA 0300, XGA 0301, 3D 0302, other 0380).
DISPLAY_CLASS_PREFIX = '03'
# PCI base class 06 = bridge (host 0600, ISA 0601, PCI 0604, other 0680 - NVSwitch uses 0680).
BRIDGE_CLASS_PREFIX = '06'


class LspciParseError(ValueError):
    """A line of ``lspci -mm`` output that does not have the documented shape."""


def split_name_id(field):
    """``"NVIDIA Corporation [10de]"`` -> ``("NVIDIA Corporation", "10de")``; no id -> ``(field, None)``."""
    match = _NAME_ID.match(field.strip())
    if not match:
        return field.strip(), None
    return match.group('name'), match.group('id').lower()


def normalize_address(slot):
    """Full lower-case PCI address with domain: ``41:00.0`` -> ``0000:41:00.0``.

    nvidia-smi prints an eight-digit domain (``00000000:41:00.0``); it is shortened to four
    digits when the upper digits are zero, as sysfs and lspci name it.
    """
    match = _SLOT.match(slot.strip())
    if not match:
        raise LspciParseError(f'not a PCI address: {slot!r}')
    domain = (match.group('domain') or '0000').lower()
    if len(domain) > 4 and int(domain[:-4], 16) == 0:
        domain = domain[-4:]
    return f"{domain}:{match.group('bdf').lower()}"


def parse_lspci_mm(text):
    """Parse ``lspci -mm -nn`` output (with or without ``-D``) into a list of device dicts."""
    devices = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise LspciParseError(f'line {number}: {exc}: {line!r}') from exc
        options = [t for t in tokens[1:] if t.startswith('-') and len(t) > 2 and t[1] in 'rp']
        fields = [t for t in tokens[1:] if t not in options]
        if len(fields) < 3:
            raise LspciParseError(f'line {number}: expected slot, class, vendor and device: {line!r}')
        fields += [''] * (5 - len(fields))
        class_name, class_id = split_name_id(fields[0])
        vendor_name, vendor_id = split_name_id(fields[1])
        device_name, device_id = split_name_id(fields[2])
        svendor_name, svendor_id = split_name_id(fields[3])
        sdevice_name, sdevice_id = split_name_id(fields[4])
        if class_id is None or vendor_id is None or device_id is None:
            raise LspciParseError(f'line {number}: numeric ids missing (was lspci run with -nn?): {line!r}')
        revision = next((t[2:] for t in options if t[1] == 'r'), None)
        devices.append({
            'pci_address': normalize_address(tokens[0]),
            'class_id': class_id,
            'class_name': class_name,
            'vendor_id': vendor_id,
            'vendor_name': vendor_name,
            'device_id': device_id,
            'device_name': device_name,
            'subsystem_vendor_id': svendor_id,
            'subsystem_vendor_name': svendor_name or None,
            'subsystem_device_id': sdevice_id,
            'subsystem_device_name': sdevice_name or None,
            'revision': revision.lower() if revision else None,
        })
    return devices


def classify_nvidia(devices):
    """Split NVIDIA (vendor 10de) devices into GPUs, NVSwitches, other bridges and the rest.

    GPUs are display-class devices (03xx: VGA and 3D controllers). NVSwitches are recognised
    by device id or name, never by class alone: old NVIDIA chipsets also used ``Bridge [0680]``
    for their Ethernet function. Audio, USB and similar functions of a board go to ``other``.
    """
    result = {'gpus': [], 'nvswitches': [], 'bridges': [], 'other': []}
    for device in devices:
        if device['vendor_id'] != _gpu_models.NVIDIA_VENDOR_ID:
            continue
        if device['class_id'].startswith(DISPLAY_CLASS_PREFIX):
            result['gpus'].append(device)
        elif device['device_id'] in _gpu_models.NVSWITCH_MODELS or 'nvswitch' in device['device_name'].lower():
            result['nvswitches'].append(device)
        elif device['class_id'].startswith(BRIDGE_CLASS_PREFIX):
            result['bridges'].append(device)
        else:
            result['other'].append(device)
    return result


def _read_text(path):
    try:
        with open(path, encoding='ascii') as handle:
            return handle.read().strip()
    except OSError:
        return None


def _link_name(path):
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def read_sysfs(address, sysfs_root='/sys'):
    """NUMA node, IOMMU group and bound kernel driver of one PCI device, from sysfs.

    Missing files mean "unknown" (``None``); a device without a driver link reports ``none``.
    ``numa_node`` is ``-1`` on machines without NUMA information, reported as ``None``.
    """
    base = os.path.join(sysfs_root, 'bus', 'pci', 'devices', address)
    if not os.path.isdir(base):
        return {'numa_node': None, 'iommu_group': None, 'kernel_driver': None}
    numa = _read_text(os.path.join(base, 'numa_node'))
    group = _link_name(os.path.join(base, 'iommu_group'))
    return {
        'numa_node': int(numa) if numa is not None and numa.lstrip('-').isdigit() and int(numa) >= 0 else None,
        'iommu_group': int(group) if group is not None and group.isdigit() else None,
        'kernel_driver': _link_name(os.path.join(base, 'driver')) or 'none',
    }
