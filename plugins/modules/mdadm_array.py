#!/usr/bin/python
# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mdadm_array
short_description: Create, assemble and grow Linux md RAID arrays, safe with data
version_added: 0.1.0
description:
  - Creates an md array (RAID 0, 1, 4, 5, 6, 10) under C(/dev/md/<name>), assembles it when its
    members exist but it is not running, adds spares, and grows it when O(grow=true).
  - Disks may be named by C(/dev/disk/by-id) path, any C(/dev) path, by-id name or kernel name;
    they are compared with the array's members as kernel devices.
  - Safe by default. An array is never created over a disk that has a partition table, a file
    system or other signature, an md superblock, a ZFS label, is mounted or is held by another
    device; the failure names the disk and what was found. A member the request lacks is never
    removed (the module fails) and the level is never changed. An array is stopped only with
    O(state=absent) and O(force=true); superblocks are left in place.
  - mdadm has no dry run; check mode plans from the current state and returns the commands that
    would run.
  - Returns O(ignore:conf_line), the C(mdadm.conf) line that keeps the array's name after a reboot.
    Write it to C(/etc/mdadm/mdadm.conf) before rebuilding the initramfs (the C(gpunas.platform.mdraid)
    role does), or the array comes back as C(/dev/md127).
author:
  - gpunas.platform developers (@gpunas)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  name:
    description: Array name; the device is C(/dev/md/<name>).
    type: str
    required: true
  state:
    description: V(present) creates, assembles or grows the array; V(absent) stops it (needs O(force=true)).
    type: str
    choices: [present, absent]
    default: present
  level:
    description: RAID level. Required with O(state=present).
    type: str
    choices: ['0', '1', '4', '5', '6', '10']
  devices:
    description: Active member disks.
    type: list
    elements: str
    default: []
  spares:
    description: Hot spare disks.
    type: list
    elements: str
    default: []
  chunk:
    description: Chunk size for striped levels (C(512K)); used at creation only.
    type: str
  metadata:
    description:
      - Superblock format; used at creation only.
      - C(0.90) is not offered. Its superblock has no array name, and this module finds its array by
        name, so a second run would take the array's own disks for used ones. C(1.0) also keeps the
        superblock at the end of the disk.
    type: str
    choices: ['1.0', '1.1', '1.2']
    default: '1.2'
  grow:
    description: Allow disks in O(devices) that are not members yet to be added and the array reshaped over them.
    type: bool
    default: false
  force:
    description:
      - Allow creating the array over disks that carry signatures and allow O(state=absent) to stop the array.
    type: bool
    default: false
requirements:
  - mdadm and util-linux (C(lsblk), C(blkid), C(wipefs)) on the target.
"""

EXAMPLES = r"""
- name: RAID5 over four disks named by id
  gpunas.platform.mdadm_array:
    name: data
    level: '5'
    chunk: 512K
    devices:
      - /dev/disk/by-id/virtio-disk0
      - /dev/disk/by-id/virtio-disk1
      - /dev/disk/by-id/virtio-disk2
      - /dev/disk/by-id/virtio-disk3
    spares:
      - /dev/disk/by-id/virtio-disk4
  register: array

- name: Keep the array's name after reboot
  ansible.builtin.lineinfile:
    path: /etc/mdadm/mdadm.conf
    line: "{{ array.conf_line }}"
"""

RETURN = r"""
device:
  description: Array device path.
  returned: always
  type: str
  sample: /dev/md/data
uuid:
  description: Array UUID as mdadm prints it; empty in check mode before creation.
  returned: always
  type: str
  sample: 3b7d2a8e:9c0f41d2:5e6a7b8c:1d2e3f40
conf_line:
  description: C(mdadm.conf) ARRAY line for the array; empty when the array does not exist (check mode, absent).
  returned: always
  type: str
  sample: ARRAY /dev/md/data metadata=1.2 UUID=3b7d2a8e:9c0f41d2:5e6a7b8c:1d2e3f40 name=nas1:data
commands:
  description: Commands that changed the system, or in check mode the commands that would run.
  returned: always
  type: list
  elements: str
  sample: ["/sbin/mdadm --create /dev/md/data --run --level=5 --raid-devices=4 --metadata=1.2 --name=data ..."]
diff:
  description: State, level, member and spare kernel devices before and after.
  returned: always
  type: dict
  sample:
    before: {state: absent}
    after: {state: present, level: raid5, devices: [/dev/vdb, /dev/vdc, /dev/vdd, /dev/vde], spares: []}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpunas.platform.plugins.module_utils import _blockdev, _mdadm


def view(detail):
    if detail is None:
        return {'state': 'absent'}
    members = detail['members']
    return {
        'state': 'present',
        'level': detail['level'],
        'devices': sorted(dev for dev, role in members.items() if role.isdigit()),
        'spares': sorted(dev for dev, role in members.items() if not role.isdigit()),
    }


def find_array(runner, bins, name):
    """Device and parsed detail of the running array called ``name``, or (None, None)."""
    _rc, out, _err = runner.run([bins['mdadm'], '--detail', '--scan'])
    for entry in _mdadm.parse_scan(out):
        if _mdadm.short_name(entry.get('name', '')) == name:
            _rc, out, _err = runner.run([bins['mdadm'], '--detail', '--export', entry['device']])
            return entry['device'], _mdadm.parse_detail(out)
    return None, None


def member_superblocks(runner, bins, disks):
    """``{disk: examine}`` for each disk; an empty dict where no superblock was found."""
    found = {}
    for disk in disks:
        rc, out, _err = runner.run([bins['mdadm'], '--examine', '--export', disk], ok_rcs=(0, 1))
        found[disk] = _blockdev.parse_key_values(out) if rc == 0 else {}
    return found


def run_or_plan(module, runner, argv, result):
    if module.check_mode:
        result['commands'].append(' '.join(argv))
    else:
        runner.run(argv, changes=True)


def refuse_used_disks(module, runner, bins, disks):
    problems = []
    for disk in disks:
        findings = _blockdev.probe_disk(runner, bins, disk)
        if findings:
            problems.append('{}: {}'.format(disk, '; '.join(findings)))
    if problems and not module.params['force']:
        module.fail_json(msg='Refusing to use disks that are not blank (safe mode): {}'.format(' | '.join(problems)),
                         commands=[])


def ensure_present(module, runner, bins, result):
    params = module.params
    names = params['devices'] + params['spares']
    missing = _blockdev.missing_disks(names)
    if missing:
        module.fail_json(msg='devices: disk {} does not exist'.format(', '.join(missing)), commands=[])
    expanded = {_blockdev.resolve(disk): _blockdev.expand(disk) for disk in names}
    devices = [_blockdev.resolve(disk) for disk in params['devices']]
    spares = [_blockdev.resolve(disk) for disk in params['spares']]
    device, detail = find_array(runner, bins, params['name'])
    if detail is not None:
        return grow_array(module, runner, bins, device, detail, devices, spares, expanded, result)
    target = '/dev/md/{}'.format(params['name'])
    examined = member_superblocks(runner, bins, [expanded[dev] for dev in devices + spares])
    uuids = {sb.get('MD_UUID') for sb in examined.values()}
    names_found = {_mdadm.short_name(sb.get('MD_NAME', '')) for sb in examined.values()}
    if len(uuids) == 1 and None not in uuids and names_found == {params['name']}:
        argv = [bins['mdadm'], '--assemble', target, f'--uuid={uuids.pop()}', *sorted(examined)]
        run_or_plan(module, runner, argv, result)
        result['changed'] = True
        result['diff'] = {'before': {'state': 'stopped'}, 'after': {'state': 'present'}}
    else:
        refuse_used_disks(module, runner, bins, sorted(expanded.values()))
        argv = _mdadm.create_argv(bins['mdadm'], target, params, [expanded[dev] for dev in devices],
                                  [expanded[dev] for dev in spares])
        run_or_plan(module, runner, argv, result)
        result['changed'] = True
        result['diff'] = {'before': {'state': 'absent'},
                          'after': {'state': 'present', 'level': 'raid{}'.format(params['level']),
                                    'devices': sorted(devices), 'spares': sorted(spares)}}
    if not module.check_mode:
        _device, detail = find_array(runner, bins, params['name'])
        fill_identity(result, detail)


def grow_array(module, runner, bins, device, detail, devices, spares, expanded, result):
    params = module.params
    try:
        add_spares, add_devices, count = _mdadm.plan_existing(detail, params['level'], devices, spares, params['grow'])
    except _mdadm.ArrayError as exc:
        module.fail_json(msg='Array {}: {}'.format(params['name'], exc), commands=[])
    before = view(detail)
    new_disks = add_spares + add_devices
    if new_disks:
        refuse_used_disks(module, runner, bins, [expanded[dev] for dev in new_disks])
        run_or_plan(module, runner, [bins['mdadm'], '--add', device] + [expanded[dev] for dev in new_disks], result)
    if add_devices:
        run_or_plan(module, runner, [bins['mdadm'], '--grow', device, f'--raid-devices={count}'], result)
    result['changed'] = bool(new_disks)
    after = dict(before)
    after['devices'] = sorted(set(before['devices']) | set(add_devices))
    after['spares'] = sorted(set(before['spares']) | set(add_spares))
    result['diff'] = {'before': before, 'after': after}
    if result['changed'] and not module.check_mode:
        _device, detail = find_array(runner, bins, params['name'])
    fill_identity(result, detail)


def fill_identity(result, detail):
    if detail is None:
        return
    result['device'] = _mdadm.name_device(detail)
    result['uuid'] = detail['uuid']
    result['conf_line'] = _mdadm.conf_line(detail)


def ensure_absent(module, runner, bins, result):
    device, detail = find_array(runner, bins, module.params['name'])
    result['diff'] = {'before': view(detail), 'after': {'state': 'absent'}}
    if detail is None:
        return
    if not module.params['force']:
        module.fail_json(msg=f'Refusing to stop array {device}: state=absent needs force=true (safe mode)',
                         commands=[])
    run_or_plan(module, runner, [bins['mdadm'], '--stop', device], result)
    result['changed'] = True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            level=dict(type='str', choices=list(_mdadm.LEVELS)),
            devices=dict(type='list', elements='str', default=[]),
            spares=dict(type='list', elements='str', default=[]),
            chunk=dict(type='str'),
            metadata=dict(type='str', choices=list(_mdadm.METADATA), default='1.2'),
            grow=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
        ),
        required_if=[('state', 'present', ('level', 'devices'))],
        supports_check_mode=True,
    )
    try:
        _mdadm.validate(module.params)
    except _mdadm.ArrayError as exc:
        module.fail_json(msg=str(exc), commands=[])
    bins = {tool: module.get_bin_path(tool, required=True) for tool in ('mdadm', 'lsblk', 'blkid', 'wipefs')}
    bins['zdb'] = module.get_bin_path('zdb')
    runner = _blockdev.CommandRunner(module)
    result = {'changed': False, 'device': '/dev/md/{}'.format(module.params['name']), 'uuid': '', 'conf_line': '',
              'commands': runner.commands, 'diff': {'before': {}, 'after': {}}}
    if module.params['state'] == 'present':
        ensure_present(module, runner, bins, result)
    else:
        ensure_absent(module, runner, bins, result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
