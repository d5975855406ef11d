#!/usr/bin/python
# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zfs_pool
short_description: Create ZFS pools from a vdev layout, grow them and keep their properties
version_added: 0.1.0
description:
  - Creates a ZFS pool from a list of vdevs (stripe, mirror, raidz1/2/3 data vdevs plus log,
    cache, spare, special and dedup devices), adds vdevs that the inventory lists and the pool
    lacks, and keeps pool and root file system properties.
  - The layout is compared as data. Disks are resolved to their kernel devices through
    C(/dev/disk/by-id) and compared with C(zpool status -P -L), so a pool created with
    C(/dev/vdb) names is recognised when the inventory names C(/dev/disk/by-id/virtio-disk0) and
    the other way round. C(community.general.zpool) compares the names as text and recreates or
    fails on such pools; this module exists for that reason.
  - Safe by default. A pool is never created over a disk that has a partition table, a file
    system or other signature, an md superblock, a ZFS label, is mounted or is held by another
    device; the failure names the disk and what was found. A vdev the pool has and the request
    lacks is never removed (the module fails). A pool is destroyed only with O(state=absent) and
    O(force=true).
  - Check mode runs C(zpool create -n) and C(zpool add -n), the tool's own dry run.
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
    description: Pool name.
    type: str
    required: true
  state:
    description:
      - V(present) creates the pool or adds missing vdevs and sets properties.
      - V(absent) destroys the pool; it requires O(force=true).
    type: str
    choices: [present, absent]
    default: present
  vdevs:
    description:
      - The pool layout. Required to create a pool.
      - Disks may be given as C(/dev/disk/by-id/...) paths, any C(/dev/...) path, a by-id name
        (C(virtio-disk0)) or a kernel name (C(vdb)).
    type: list
    elements: dict
    default: []
    suboptions:
      role:
        description: What the vdev is for.
        type: str
        choices: [data, log, special, dedup, cache, spare]
        default: data
      type:
        description:
          - How the disks are grouped. V(stripe) makes one top-level vdev per disk.
          - V(cache) and V(spare) devices must be V(stripe).
        type: str
        choices: [stripe, mirror, raidz, raidz1, raidz2, raidz3]
        default: stripe
      disks:
        description: Disks of this vdev.
        type: list
        elements: str
        required: true
  properties:
    description:
      - Pool properties (C(zpool create -o), C(zpool set)), for example C(ashift) or C(autotrim).
    type: dict
    default: {}
  filesystem_properties:
    description:
      - Properties of the pool's root dataset (C(zpool create -O), C(zfs set)), for example
        C(compression=lz4), C(atime=off), C(mountpoint).
      - Size values (C(10G)) are compared with the exact byte counts ZFS reports.
    type: dict
    default: {}
  force:
    description:
      - Allow creating the pool over disks that carry signatures (passes C(-f) to C(zpool create))
        and allow O(state=absent) to destroy the pool.
      - Roles set this only when their safe mode is off and the item asks for it.
    type: bool
    default: false
requirements:
  - zfsutils (C(zpool), C(zfs), C(zdb)) and util-linux (C(lsblk), C(blkid), C(wipefs)) on the target.
notes:
  - A vdev can be added but never removed or changed by this module; a request that lacks a vdev
    the pool has fails and names the vdev.
seealso:
  - module: community.general.zpool
    description: Compares disk names as text; fails to recognise pools whose disks are named differently.
"""

EXAMPLES = r"""
- name: Create the raidz2 pool tank over four disks named by id
  gpunas.platform.zfs_pool:
    name: tank
    vdevs:
      - type: raidz2
        disks:
          - /dev/disk/by-id/virtio-disk0
          - /dev/disk/by-id/virtio-disk1
          - /dev/disk/by-id/virtio-disk2
          - /dev/disk/by-id/virtio-disk3
    properties:
      ashift: 12
    filesystem_properties:
      compression: lz4
      atime: "off"

- name: Mirror with a log, a cache and a hot spare
  gpunas.platform.zfs_pool:
    name: fast
    vdevs:
      - type: mirror
        disks: [virtio-disk0, virtio-disk1]
      - role: log
        disks: [virtio-disk2]
      - role: cache
        disks: [virtio-disk3]
      - role: spare
        disks: [virtio-disk4]

- name: Destroy a pool (explicit opt-in)
  gpunas.platform.zfs_pool:
    name: scratch
    state: absent
    force: true
"""

RETURN = r"""
name:
  description: Pool name.
  returned: always
  type: str
  sample: tank
commands:
  description: Commands that changed the system, or in check mode the commands that would run.
  returned: always
  type: list
  elements: str
  sample: ["/sbin/zpool create -o ashift=12 -O compression=lz4 tank raidz2 /dev/disk/by-id/virtio-disk0 ..."]
layout:
  description: Top-level vdevs after the run as C(role type [disks]) with kernel device paths.
  returned: always
  type: list
  elements: str
  sample: ["data raidz2 [/dev/vdb, /dev/vdc, /dev/vdd, /dev/vde]"]
diff:
  description: Normalised state before and after (state, layout, properties, filesystem_properties).
  returned: always
  type: dict
  sample:
    before: {state: absent}
    after:
      state: present
      layout: ["data raidz2 [/dev/vdb, /dev/vdc, /dev/vdd, /dev/vde]"]
      properties: {ashift: "12"}
      filesystem_properties: {compression: lz4}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpunas.platform.plugins.module_utils import _blockdev, _zfs


def find_bins(module):
    bins = {tool: module.get_bin_path(tool, required=True) for tool in ('zpool', 'zfs', 'lsblk', 'blkid', 'wipefs')}
    bins['zdb'] = module.get_bin_path('zdb')
    bins['mdadm'] = module.get_bin_path('mdadm')
    return bins


def refuse_used_disks(module, runner, bins, disks, commands):
    problems = []
    for disk in disks:
        findings = _blockdev.probe_disk(runner, bins, disk)
        if findings:
            problems.append('{}: {}'.format(disk, '; '.join(findings)))
    if problems and not module.params['force']:
        module.fail_json(
            msg='Refusing to use disks that are not blank (safe mode): {}'.format(' | '.join(problems)),
            commands=commands)
    return problems


def current_properties(runner, argv_prefix, props, target):
    if not props:
        return {}
    _rc, out, _err = runner.run([*argv_prefix, ','.join(sorted(props)), target])
    return _zfs.parse_get(out)


def apply_properties(module, runner, tool, props, current, target, result):
    changes = _zfs.property_changes(props, current)
    for prop, (_before, after) in changes.items():
        argv = [tool, 'set', f'{prop}={after}', target]
        if module.check_mode:
            result['commands'].append(' '.join(argv))
        else:
            runner.run(argv, changes=True)
    return changes


def ensure_present(module, runner, bins, result):
    params = module.params
    name = params['name']
    try:
        _zfs.validate_vdevs(params['vdevs'])
    except _zfs.LayoutError as exc:
        module.fail_json(msg=str(exc), commands=[])
    names = [disk for vdev in params['vdevs'] for disk in vdev['disks']]
    missing = _blockdev.missing_disks(names)
    if missing:
        module.fail_json(msg='vdevs: disk {} does not exist'.format(', '.join(missing)), commands=[])
    expanded = {_blockdev.resolve(disk): _blockdev.expand(disk) for disk in names}
    requested = _zfs.requested_layout(params['vdevs'], _blockdev.resolve)
    rc, out, _err = runner.run([bins['zpool'], 'list', '-H', '-o', 'name', name], ok_rcs=(0, 1))
    if rc != 0:
        return create_pool(module, runner, bins, requested, expanded, result)
    rc, out, _err = runner.run([bins['zpool'], 'status', '-P', '-L', name])
    status = _zfs.parse_zpool_status(out)
    actual = _zfs.actual_layout(status['vdevs'], set(expanded), _blockdev.resolve, _blockdev.parent_disk)
    missing_vdevs, extra_vdevs = _zfs.plan_layout(actual, requested)
    if extra_vdevs:
        module.fail_json(
            msg=f'Pool {name} has vdevs the request lacks; refusing to remove or change them: '
                + ' | '.join(_zfs.describe_vdev(vdev) for vdev in extra_vdevs),
            commands=[])
    before_props = current_properties(runner, [bins['zpool'], 'get', '-H', '-p'], params['properties'], name)
    before_fs = current_properties(
        runner, [bins['zfs'], 'get', '-H', '-p', '-o', 'property,value,source'], params['filesystem_properties'], name)
    result['diff']['before'] = state_view(actual, before_props, before_fs)
    if missing_vdevs:
        new_disks = sorted({expanded[disk] for vdev in missing_vdevs for disk in vdev[2]})
        refuse_used_disks(module, runner, bins, new_disks, result['commands'])
        argv = [bins['zpool'], 'add'] + (['-f'] if params['force'] else []) + [name]
        argv += _zfs.vdev_args(missing_vdevs, expanded)
        if module.check_mode:
            runner.run([*argv[:2], '-n', *argv[2:]])
            result['commands'].append(' '.join(argv))
        else:
            runner.run(argv, changes=True)
    pool_changes = apply_properties(module, runner, bins['zpool'], params['properties'], before_props, name, result)
    fs_changes = apply_properties(module, runner, bins['zfs'], params['filesystem_properties'], before_fs, name, result)
    after_props = dict(before_props)
    after_props.update((prop, (after, 'local')) for prop, (_b, after) in pool_changes.items())
    after_fs = dict(before_fs)
    after_fs.update((prop, (after, 'local')) for prop, (_b, after) in fs_changes.items())
    result['diff']['after'] = state_view(sorted(actual + missing_vdevs), after_props, after_fs)
    result['layout'] = result['diff']['after']['layout']
    result['changed'] = bool(missing_vdevs or pool_changes or fs_changes)


def create_pool(module, runner, bins, requested, expanded, result):
    params = module.params
    refuse_used_disks(module, runner, bins, sorted(expanded.values()), result['commands'])
    options = _zfs.property_args('-o', {k: _zfs.zfs_value(v) for k, v in params['properties'].items()})
    options += _zfs.property_args('-O', {k: _zfs.zfs_value(v) for k, v in params['filesystem_properties'].items()})
    argv = [bins['zpool'], 'create'] + (['-f'] if params['force'] else []) + options + [params['name']]
    argv += _zfs.vdev_args(requested, expanded)
    if module.check_mode:
        runner.run([*argv[:2], '-n', *argv[2:]])
        result['commands'].append(' '.join(argv))
    else:
        runner.run(argv, changes=True)
    result['changed'] = True
    result['diff']['before'] = {'state': 'absent'}
    result['diff']['after'] = state_view(
        requested,
        {k: (_zfs.zfs_value(v), 'local') for k, v in params['properties'].items()},
        {k: (_zfs.zfs_value(v), 'local') for k, v in params['filesystem_properties'].items()})
    result['layout'] = result['diff']['after']['layout']


def state_view(layout, props, fs_props):
    return {
        'state': 'present',
        'layout': [_zfs.describe_vdev(vdev) for vdev in layout],
        'properties': {prop: value for prop, (value, _source) in sorted(props.items())},
        'filesystem_properties': {prop: value for prop, (value, _source) in sorted(fs_props.items())},
    }


def ensure_absent(module, runner, bins, result):
    name = module.params['name']
    rc, _out, _err = runner.run([bins['zpool'], 'list', '-H', '-o', 'name', name], ok_rcs=(0, 1))
    if rc != 0:
        result['diff'] = {'before': {'state': 'absent'}, 'after': {'state': 'absent'}}
        return
    if not module.params['force']:
        module.fail_json(msg=f'Refusing to destroy pool {name}: state=absent needs force=true (safe mode)', commands=[])
    argv = [bins['zpool'], 'destroy', name]
    if module.check_mode:
        result['commands'].append(' '.join(argv))
    else:
        runner.run(argv, changes=True)
    result['changed'] = True
    result['diff'] = {'before': {'state': 'present'}, 'after': {'state': 'absent'}}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            vdevs=dict(type='list', elements='dict', default=[], options=dict(
                role=dict(type='str', choices=list(_zfs.VDEV_ROLES), default='data'),
                type=dict(type='str', choices=list(_zfs.VDEV_TYPES), default='stripe'),
                disks=dict(type='list', elements='str', required=True),
            )),
            properties=dict(type='dict', default={}),
            filesystem_properties=dict(type='dict', default={}),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    bins = find_bins(module)
    runner = _blockdev.CommandRunner(module)
    result = {'changed': False, 'name': module.params['name'], 'commands': runner.commands, 'layout': [],
              'diff': {'before': {}, 'after': {}}}
    if module.params['state'] == 'present':
        ensure_present(module, runner, bins, result)
    else:
        ensure_absent(module, runner, bins, result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
