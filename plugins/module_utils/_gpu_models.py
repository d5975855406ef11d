# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NVIDIA PCI device ids as data: model, architecture, memory, MIG profiles, vGPU support.

Sources (checked 2026-11-23):

* device ids and marketing names: NVIDIA's supported-GPU table in the README of
  NVIDIA/open-gpu-kernel-modules (``<device> <subvendor> <subdevice>`` rows) and the pci.ids
  database (pciutils 2023.04.10 as shipped by Debian 12, plus later pci.ids entries for
  H200 2335, L40S 26b9, B200 2901 and the H100 NVSwitch 22a3);
* memory sizes: nominal board memory in GiB as in the product names (the driver's exact
  figure is reported separately when a driver is present);
* MIG profiles: NVIDIA MIG User Guide, "Supported MIG Profiles"
  (https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html);
* vGPU support: NVIDIA Virtual GPU Software supported-GPU list (data-centre and RTX
  professional boards; GeForce boards are not supported); HGX H200 and HGX B200 are listed as
  vGPU platforms in https://docs.nvidia.com/ai-enterprise/release-8/8.0/infra-software/vgpu/features/nvswitch.html.

Lookups never fail: an id that is not in the table gets a generic entry built from what
``lspci`` says about the device (see ``describe``). What the table cannot say about such a
board (memory, MIG, vGPU) is ``None``, never ``False``; the driver fills in what it knows.
"""

from __future__ import annotations

NVIDIA_VENDOR_ID = '10de'

_A30_PROFILES = ('1g.6gb', '1g.6gb+me', '2g.12gb', '2g.12gb+me', '4g.24gb')
_A100_40_PROFILES = ('1g.5gb', '1g.5gb+me', '1g.10gb', '2g.10gb', '3g.20gb', '4g.20gb', '7g.40gb')
_A100_80_PROFILES = ('1g.10gb', '1g.10gb+me', '1g.20gb', '2g.20gb', '3g.40gb', '4g.40gb', '7g.80gb')
_H100_80_PROFILES = _A100_80_PROFILES
_H100_94_PROFILES = ('1g.12gb', '1g.12gb+me', '1g.24gb', '2g.24gb', '3g.47gb', '4g.47gb', '7g.94gb')
_H200_PROFILES = ('1g.18gb', '1g.18gb+me', '1g.35gb', '2g.35gb', '3g.71gb', '4g.71gb', '7g.141gb')
_B200_PROFILES = ('1g.23gb', '1g.23gb+me', '1g.45gb', '2g.45gb', '3g.90gb', '4g.90gb', '7g.180gb')


def _entry(model, architecture, memory_gib, mig_profiles=(), vgpu=True):
    return {
        'model': model,
        'architecture': architecture,
        'memory_gib': memory_gib,
        'mig_profiles': list(mig_profiles),
        'vgpu_supported': vgpu,
    }


# Device id (lower-case hex, vendor 10de) -> facts about the board.
GPU_MODELS = {
    '1db1': _entry('Tesla V100 SXM2 16GB', 'Volta', 16),
    '1db4': _entry('Tesla V100 PCIe 16GB', 'Volta', 16),
    '1db5': _entry('Tesla V100 SXM2 32GB', 'Volta', 32),
    '1db6': _entry('Tesla V100 PCIe 32GB', 'Volta', 32),
    '1df6': _entry('Tesla V100S PCIe 32GB', 'Volta', 32),
    '1eb8': _entry('Tesla T4', 'Turing', 16),
    '2236': _entry('A10', 'Ampere', 24),
    '20b7': _entry('A30', 'Ampere', 24, _A30_PROFILES),
    '20b0': _entry('A100 SXM4 40GB', 'Ampere', 40, _A100_40_PROFILES),
    '20f1': _entry('A100 PCIe 40GB', 'Ampere', 40, _A100_40_PROFILES),
    '20b2': _entry('A100 SXM4 80GB', 'Ampere', 80, _A100_80_PROFILES),
    '20b5': _entry('A100 PCIe 80GB', 'Ampere', 80, _A100_80_PROFILES),
    '27b8': _entry('L4', 'Ada Lovelace', 24),
    '26b9': _entry('L40S', 'Ada Lovelace', 48),
    '2330': _entry('H100 SXM5 80GB', 'Hopper', 80, _H100_80_PROFILES),
    '2331': _entry('H100 PCIe 80GB', 'Hopper', 80, _H100_80_PROFILES),
    '2321': _entry('H100 NVL 94GB', 'Hopper', 94, _H100_94_PROFILES),
    '2335': _entry('H200 SXM 141GB', 'Hopper', 141, _H200_PROFILES),
    '2684': _entry('GeForce RTX 4090', 'Ada Lovelace', 24, vgpu=False),
    '26b1': _entry('RTX 6000 Ada Generation', 'Ada Lovelace', 48),
    '2901': _entry('B200', 'Blackwell', 180, _B200_PROFILES),
}

# NVSwitch chips enumerate as NVIDIA "Bridge [0680]" devices; they are fabric, not GPUs.
NVSWITCH_MODELS = {
    '1ac1': 'V100 NVSwitch',
    '1af1': 'A100 NVSwitch',
    '22a3': 'H100 NVSwitch',
}

# Chip code-name prefix (the first word lspci prints for a device, e.g. "GH100") ->
# architecture, for ids the table above does not know. Longest prefix wins.
ARCHITECTURE_BY_CODENAME = {
    'GK': 'Kepler',
    'GM': 'Maxwell',
    'GP': 'Pascal',
    'GV': 'Volta',
    'TU': 'Turing',
    'GA': 'Ampere',
    'AD': 'Ada Lovelace',
    'GH': 'Hopper',
    'GB': 'Blackwell',
}


def architecture_from_name(device_name):
    """Architecture from the chip code name lspci prints first (``GA100 [A100 ...]``), or None."""
    codename = (device_name or '').split(' ', 1)[0].upper()
    for prefix in sorted(ARCHITECTURE_BY_CODENAME, key=len, reverse=True):
        rest = codename[len(prefix):]
        if codename.startswith(prefix) and rest[:1].isdigit():
            return ARCHITECTURE_BY_CODENAME[prefix]
    return None


# What lspci prints for a device its pci.ids does not know ("NVIDIA Corporation Device [10de:2bb1]").
LSPCI_UNNAMED = 'Device'


def marketing_name(device_name):
    """``GA100 [A100 PCIe 40GB]`` -> ``A100 PCIe 40GB``; names without brackets are kept, lspci's placeholder is ''."""
    name = (device_name or '').strip()
    if name == LSPCI_UNNAMED:
        return ''
    if name.endswith(']') and '[' in name:
        return name[name.index('[') + 1:-1].strip() or name
    return name


def describe(device_id, device_name):
    """Facts for one NVIDIA device id; unknown ids get a generic entry from the lspci name."""
    known = GPU_MODELS.get((device_id or '').lower())
    if known is not None:
        return dict(known, mig_profiles=list(known['mig_profiles']), mig_supported=bool(known['mig_profiles']),
                    known_model=True)
    return {
        'model': marketing_name(device_name) or f'NVIDIA device {device_id}',
        'architecture': architecture_from_name(device_name),
        'memory_gib': None,
        'mig_profiles': [],
        'mig_supported': None,
        'vgpu_supported': None,
        'known_model': False,
    }
