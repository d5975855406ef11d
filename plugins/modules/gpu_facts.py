#!/usr/bin/python
# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Discover NVIDIA GPUs, their capabilities and the driver's view of them
version_added: 0.1.0
description:
  - Finds NVIDIA devices (PCI vendor C(10de)) with C(lspci -D -mm -nn -d 10de:) and reports every
    display-class device (VGA and 3D controllers) as a GPU. NVSwitch chips and other NVIDIA bridges are reported
    separately and are not counted as GPUs.
  - For each GPU it reports the PCI address, vendor, device and subsystem ids, model name, architecture,
    nominal memory, whether MIG and vGPU are supported (from a table of device ids kept as data in the
    collection), the kernel driver bound to it, its NUMA node and its IOMMU group (from sysfs).
  - Device ids that are not in the table still produce an entry, built from what C(lspci) prints; what the
    table cannot know about such a board (memory, MIG and vGPU support) is V(null), never V(false).
  - When the driver answers, its product name, architecture and MIG mode win over the table and C(lspci);
    they become the C(model), C(architecture) and C(mig_supported) of the GPU.
  - When an NVIDIA GPU is bound to the C(nvidia) driver, it also asks the driver for the driver and CUDA
    versions, and per GPU the UUID, memory, current and pending MIG mode, existing MIG instances,
    persistence mode and virtualization mode, through NVML (the C(pynvml) module of C(nvidia-ml-py)) when
    it is importable on the target, otherwise through C(nvidia-smi -q -x). With two or more GPUs it reads
    the NVLink topology (NVML, or C(nvidia-smi topo -m)) and returns the groups of GPUs joined by NVLink.
  - The module only reads. It never changes the host or any GPU setting.
  - An inventory value for O(has_nvidia_gpu) wins over detection and is reported as overridden.
author:
  - gpunas.platform developers (@gpunas)
requirements:
  - C(lspci) from pciutils on the target.
  - Optional, C(nvidia-smi) or the Python package C(nvidia-ml-py) on the target for the driver-side facts.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
options:
  has_nvidia_gpu:
    description:
      - Inventory override. When set, C(has_nvidia_gpu) takes this value whatever was detected, and
        C(gpunas_gpu_detection.overridden) is V(true).
      - Leave unset to use detection.
    type: bool
  query_driver:
    description:
      - Ask the NVIDIA driver (NVML or C(nvidia-smi)) for driver-side facts when a GPU is bound to the
        C(nvidia) driver.
      - V(false) reports only what C(lspci) and sysfs show.
    type: bool
    default: true
  use_nvml:
    description:
      - Use NVML through C(pynvml) when it can be imported on the target. V(false) always uses
        C(nvidia-smi).
    type: bool
    default: true
  sysfs_root:
    description:
      - Where sysfs is mounted. NUMA node, IOMMU group and bound driver are read from
        C(<sysfs_root>/bus/pci/devices/<address>/).
      - Change it only to inspect a chroot or a copied tree.
    type: path
    default: /sys
  command_timeout:
    description:
      - Seconds each external command (C(lspci), C(nvidia-smi -q -x), C(nvidia-smi topo -m)) may run before
        it is killed, so that a hung driver cannot hang the play.
      - C(lspci) running out of time fails the module; C(nvidia-smi) running out of time is reported in
        C(gpunas_gpu_driver.error) and the PCI facts are still returned.
      - NVML calls run inside the module and are not bounded by this option.
      - Must be at least V(1).
    type: int
    default: 30
notes:
  - The 8-digit PCI domain nvidia-smi prints (C(00000000:41:00.0)) is reported in the 4-digit form
    lspci and sysfs use (C(0000:41:00.0)) so both views join on the address.
seealso:
  - name: NVIDIA MIG User Guide, supported profiles
    description: Source of the MIG profile names in the device-id table.
    link: https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html
"""

EXAMPLES = r"""
- name: Discover GPUs
  gpunas.platform.gpu_facts:

- name: Discover GPUs without asking the driver (PCI and sysfs only)
  gpunas.platform.gpu_facts:
    query_driver: false

- name: Discover GPUs, giving a slow driver a minute
  gpunas.platform.gpu_facts:
    command_timeout: 60

- name: Respect the inventory override for this host
  gpunas.platform.gpu_facts:
    has_nvidia_gpu: "{{ has_nvidia_gpu | default(omit) }}"

- name: Show what was found
  ansible.builtin.debug:
    msg: "{{ gpunas_gpu_summary }}"

# Ad hoc, from the controller:
#   ansible all -m gpunas.platform.gpu_facts
#   ansible gpu_nodes -m gpunas.platform.gpu_facts -a query_driver=false
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    has_nvidia_gpu:
      description: Whether the host counts as an NVIDIA GPU host (the override when one is given).
      returned: always
      type: bool
      sample: true
    gpunas_gpu_count:
      description: Number of NVIDIA GPUs found on the PCI bus.
      returned: always
      type: int
      sample: 1
    gpunas_runtime_mode:
      description: Container-runtime mode later roles give this host, V(nvidia) or V(standard).
      returned: always
      type: str
      sample: nvidia
    gpunas_gpu_summary:
      description: One line for people.
      returned: always
      type: str
      sample: "1 NVIDIA GPU: 1 x A100 SXM4 40GB (Ampere, MIG enabled); driver 510.47.03, CUDA 11.6 (nvidia-smi)"
    gpunas_gpus:
      description:
        - One entry per GPU, in PCI address order.
        - C(virtualization_mode) is what the driver says about this GPU, V(none) (bare metal), V(passthrough)
          (the whole GPU passed through to this VM), V(vgpu) (a vGPU, seen from inside the guest),
          V(host_vgpu) (a GPU that hosts vGPUs) or V(host_vsga); V(null) without a driver answer.
      returned: always
      type: list
      elements: dict
      sample:
        - pci_address: "0000:00:04.0"
          vendor_id: "10de"
          device_id: "20b0"
          subsystem_vendor_id: "10de"
          subsystem_device_id: "134f"
          revision: "a1"
          pci_name: "GA100 [A100 SXM4 40GB]"
          model: "A100 SXM4 40GB"
          architecture: "Ampere"
          memory_gib: 40
          known_model: true
          mig_supported: true
          mig_profiles: ["1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]
          vgpu_supported: true
          kernel_driver: "nvidia"
          numa_node: 0
          iommu_group: 14
          index: 0
          uuid: "GPU-27b94a00-ed54-5c24-b1fd-1054085de32a"
          driver_name: "NVIDIA A100-SXM4-40GB"
          memory_total_mib: 40960
          mig_mode_current: "enabled"
          mig_mode_pending: "enabled"
          mig_instances:
            - index: 0
              gpu_instance_id: 1
              compute_instance_id: 0
              multiprocessor_count: 42
              memory_total_mib: 19968
          persistence_mode: "disabled"
          virtualization_mode: "passthrough"
    gpunas_gpu_driver:
      description:
        - What the NVIDIA driver reported. C(present) is V(false) when no driver answered, and C(error) then
          says why (no NVML library, no C(nvidia-smi), or its error message).
      returned: always
      type: dict
      sample:
        present: true
        source: nvidia-smi
        version: "510.47.03"
        cuda_version: "11.6"
        error: null
    gpunas_nvlink_groups:
      description: Groups of GPU indices joined by NVLink, largest first; empty without NVLink or driver.
      returned: always
      type: list
      elements: list
      sample: [[0, 1, 2, 3, 4, 5, 6, 7]]
    gpunas_nvswitches:
      description: NVSwitch chips (not GPUs).
      returned: always
      type: list
      elements: dict
      sample:
        - pci_address: "0000:07:00.0"
          device_id: "22a3"
          model: "H100 NVSwitch"
          kernel_driver: "none"
    gpunas_nvidia_bridges:
      description: Other NVIDIA bridge-class functions (not GPUs).
      returned: always
      type: list
      elements: dict
      sample:
        - pci_address: "0000:00:02.0"
          device_id: "02fc"
          pci_name: "C51 PCI Express Bridge"
          class_name: "PCI bridge"
    gpunas_gpu_detection:
      description: How the answer was reached.
      returned: always
      type: dict
      sample:
        overridden: false
        detected_has_nvidia_gpu: true
commands:
  description: Every command the module ran, as argv lists.
  returned: always
  type: list
  elements: list
  sample: [["/usr/bin/lspci", "-D", "-mm", "-nn", "-d", "10de:"], ["/usr/bin/nvidia-smi", "-q", "-x"]]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpunas.platform.plugins.module_utils import _gpu_models, _nvidia_smi, _nvml, _pci
from ansible_collections.gpunas.platform.plugins.module_utils._runner import CommandRunner, CommandTimeout

PCIUTILS_HINT = 'install the pciutils package (the gpunas.platform.gpu_detect role installs it before detecting)'

DRIVER_KEYS = ('index', 'uuid', 'driver_name', 'memory_total_mib', 'mig_mode_current', 'mig_mode_pending',
               'mig_instances', 'persistence_mode', 'virtualization_mode')


def pci_gpu(device, sysfs_root):
    """One GPU from its lspci record, the device-id table and sysfs; driver fields start empty."""
    entry = {
        'pci_address': device['pci_address'],
        'vendor_id': device['vendor_id'],
        'device_id': device['device_id'],
        'subsystem_vendor_id': device['subsystem_vendor_id'],
        'subsystem_device_id': device['subsystem_device_id'],
        'revision': device['revision'],
        'pci_name': device['device_name'],
    }
    entry.update(_gpu_models.describe(device['device_id'], device['device_name']))
    entry.update(_pci.read_sysfs(device['pci_address'], sysfs_root))
    entry.update(dict.fromkeys(DRIVER_KEYS))
    entry['mig_instances'] = []
    return entry


def query_nvml(nvml):
    """Driver view through NVML, or ``(None, error)`` when NVML cannot start (no library, no driver) or
    answers with data that is not what it documents."""
    try:
        view = _nvml.collect(nvml)
    except (nvml.NVMLError, _nvml.NvmlDataError) as exc:
        return None, f'NVML: {exc}'
    return view, None


def query_nvidia_smi(module, commands):
    """Driver view through nvidia-smi, or ``(None, error)`` when it is missing or fails."""
    if not module.get_bin_path('nvidia-smi'):
        return None, 'nvidia-smi not found'
    smi = CommandRunner(module, 'nvidia-smi', timeout=module.params['command_timeout'])
    try:
        rc, out, err = smi.run(_nvidia_smi.QUERY_ARGS, ok_rcs=None)
    except CommandTimeout as exc:
        return None, str(exc)
    finally:
        commands.extend(smi.commands)
    if rc != 0:
        return None, f'nvidia-smi -q -x failed with rc {rc}: {(err or out).strip()}'
    try:
        view = _nvidia_smi.parse_query_xml(out)
    except _nvidia_smi.NvidiaSmiParseError as exc:
        return None, str(exc)
    view['links'] = {}
    if len(view['gpus']) > 1:
        try:
            rc, out, err = smi.run(_nvidia_smi.TOPOLOGY_ARGS, ok_rcs=None)
        except CommandTimeout as exc:
            view['topology_error'] = str(exc)
            return view, None
        finally:
            commands.append(smi.commands[-1])
        if rc == 0:
            try:
                view['links'] = _nvidia_smi.parse_topology(out)
            except _nvidia_smi.NvidiaSmiParseError as exc:
                view['topology_error'] = str(exc)
        else:
            view['topology_error'] = f'nvidia-smi topo -m failed with rc {rc}: {(err or out).strip()}'
    return view, None


def driver_view(module, gpus, commands):
    """Ask the driver when at least one GPU is (or may be) bound to ``nvidia``."""
    if not module.params['query_driver'] or not any(g['kernel_driver'] in ('nvidia', None) for g in gpus):
        return None, None
    errors = []
    nvml = _nvml.import_pynvml() if module.params['use_nvml'] else None
    if nvml is not None:
        view, error = query_nvml(nvml)
        if view is not None:
            return view, None
        errors.append(error)
    view, error = query_nvidia_smi(module, commands)
    if view is None:
        errors.append(error)
    return view, '; '.join(errors) or None


def merge_driver_view(gpus, view):
    """Join the driver's per-GPU facts onto the PCI entries by address.

    The driver knows the board better than the device-id table and pci.ids: its product name,
    architecture and MIG answer win over theirs.
    """
    by_address = {gpu['pci_address']: gpu for gpu in gpus}
    for seen in view['gpus']:
        gpu = by_address.get(seen['pci_address'])
        if gpu is None:
            continue
        gpu.update({
            'index': seen['index'],
            'uuid': seen['uuid'],
            'driver_name': seen['name'],
            'memory_total_mib': seen['memory_total_mib'],
            'mig_mode_current': seen['mig_mode_current'],
            'mig_mode_pending': seen['mig_mode_pending'],
            'mig_instances': seen['mig_instances'],
            'persistence_mode': seen['persistence_mode'],
            'virtualization_mode': seen['virtualization_mode'],
        })
        if seen['name']:
            gpu['model'] = seen['name']
        if seen['architecture']:
            gpu['architecture'] = seen['architecture']
        if seen['mig_supported'] is not None:
            gpu['mig_supported'] = seen['mig_supported']


def summary(gpus, has_gpu, overridden, driver):
    """``2 NVIDIA GPUs: 1 x GeForce RTX 5090 (Blackwell), 1 x A100 PCIe 40GB (Ampere); NVIDIA driver not queried``."""
    if gpus:
        counts = {}
        for gpu in gpus:
            architecture = gpu['architecture'] or 'unknown architecture'
            mig = ', MIG enabled' if gpu['mig_mode_current'] == 'enabled' else ''
            label = f"{gpu['model']} ({architecture}{mig})"
            counts[label] = counts.get(label, 0) + 1
        plural = '' if len(gpus) == 1 else 's'
        kinds = ', '.join(f'{n} x {label}' for label, n in counts.items())
        text = f'{len(gpus)} NVIDIA GPU{plural}: {kinds}'
        if driver['present']:
            text += f"; driver {driver['version']}, CUDA {driver['cuda_version']} ({driver['source']})"
        elif driver['error']:
            text += '; no NVIDIA driver answered'
        else:
            text += '; NVIDIA driver not queried'
    else:
        text = 'no NVIDIA GPU'
    if overridden:
        text += f"; has_nvidia_gpu overridden to {'true' if has_gpu else 'false'} by inventory"
    return text


def gather(module):
    """All facts for this host, and the commands that produced them."""
    lspci = CommandRunner(module, 'lspci', missing_hint=PCIUTILS_HINT, timeout=module.params['command_timeout'])
    _rc, out, _err = lspci.run(_pci.LSPCI_ARGS)
    commands = list(lspci.commands)
    try:
        devices = _pci.parse_lspci_mm(out)
    except _pci.LspciParseError as exc:
        module.fail_json(msg=f'Cannot parse lspci output: {exc}', commands=commands)
    found = _pci.classify_nvidia(devices)
    sysfs_root = module.params['sysfs_root']
    gpus = sorted((pci_gpu(device, sysfs_root) for device in found['gpus']), key=lambda g: g['pci_address'])

    view, error = driver_view(module, gpus, commands)
    driver = {'present': view is not None, 'source': None, 'version': None, 'cuda_version': None, 'error': error}
    groups = []
    if view is not None:
        merge_driver_view(gpus, view)
        driver.update(source=view['source'], version=view['driver_version'], cuda_version=view['cuda_version'])
        if view.get('topology_error'):
            driver['error'] = view['topology_error']
        groups = _nvidia_smi.nvlink_groups(view['links'])

    detected = bool(gpus)
    override = module.params['has_nvidia_gpu']
    overridden = override is not None
    has_gpu = override if overridden else detected
    facts = {
        'has_nvidia_gpu': has_gpu,
        'gpunas_gpu_count': len(gpus),
        'gpunas_runtime_mode': 'nvidia' if has_gpu else 'standard',
        'gpunas_gpu_summary': summary(gpus, has_gpu, overridden, driver),
        'gpunas_gpus': gpus,
        'gpunas_gpu_driver': driver,
        'gpunas_nvlink_groups': groups,
        'gpunas_nvswitches': [
            {'pci_address': d['pci_address'], 'device_id': d['device_id'],
             'model': _gpu_models.NVSWITCH_MODELS.get(d['device_id'], _gpu_models.marketing_name(d['device_name'])),
             'kernel_driver': _pci.read_sysfs(d['pci_address'], sysfs_root)['kernel_driver']}
            for d in found['nvswitches']],
        'gpunas_nvidia_bridges': [
            {'pci_address': d['pci_address'], 'device_id': d['device_id'], 'pci_name': d['device_name'],
             'class_name': d['class_name']}
            for d in found['bridges']],
        'gpunas_gpu_detection': {'overridden': overridden, 'detected_has_nvidia_gpu': detected},
    }
    return facts, commands


def argument_spec():
    """The options (shared with tools/bench/gpu_facts_bench.py, which builds the module the same way)."""
    return {
        'has_nvidia_gpu': {'type': 'bool'},
        'query_driver': {'type': 'bool', 'default': True},
        'use_nvml': {'type': 'bool', 'default': True},
        'sysfs_root': {'type': 'path', 'default': '/sys'},
        'command_timeout': {'type': 'int', 'default': 30},
    }


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if module.params['command_timeout'] < 1:
        module.fail_json(msg=f"command_timeout must be at least 1 second, got {module.params['command_timeout']}")
    facts, commands = gather(module)
    module.exit_json(changed=False, ansible_facts=facts, commands=commands)


if __name__ == '__main__':
    main()
