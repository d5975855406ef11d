#!/usr/bin/python
# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zfs_dataset
short_description: Create ZFS file systems and keep their properties, never destroying recursively
version_added: 0.1.0
description:
  - Creates a ZFS file system (with its parents) and keeps the listed properties.
  - Size properties (C(quota=10G), C(recordsize=1M)) are compared with the exact byte counts that
    C(zfs get -p) prints, so a re-run reports no change. C(community.general.zfs) compares the
    text and reports a change on every run for such values; it also destroys with
    C(zfs destroy -R), which removes clones and dependants. This module exists for those reasons.
  - Values from a fixed list (C(compression), C(atime), C(sync), ...) are compared ignoring case;
    every other value, such as C(mountpoint), share options or a user property, must match exactly.
  - A dataset is destroyed only with O(state=absent) and O(force=true), and then with a plain
    C(zfs destroy) that fails when the dataset has children, snapshots or clones.
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
    description: Dataset name, for example C(tank/shared).
    type: str
    required: true
  state:
    description: V(present) creates the dataset and sets properties; V(absent) destroys it (needs O(force=true)).
    type: str
    choices: [present, absent]
    default: present
  properties:
    description:
      - Properties to keep, for example C(compression), C(recordsize), C(atime), C(quota),
        C(reservation), C(mountpoint), C(dedup). Booleans become C(on)/C(off).
    type: dict
    default: {}
  force:
    description: Allow O(state=absent) to destroy the dataset.
    type: bool
    default: false
requirements:
  - zfsutils (C(zfs)) on the target.
seealso:
  - module: community.general.zfs
    description: Not idempotent for size properties; destroys with C(-R).
"""

EXAMPLES = r"""
- name: Shared dataset with a quota
  gpunas.platform.zfs_dataset:
    name: tank/shared
    properties:
      compression: lz4
      recordsize: 1M
      quota: 100G
      atime: false

- name: Remove a dataset (explicit opt-in, no recursion)
  gpunas.platform.zfs_dataset:
    name: tank/old
    state: absent
    force: true
"""

RETURN = r"""
name:
  description: Dataset name.
  returned: always
  type: str
  sample: tank/shared
commands:
  description: Commands that changed the system, or in check mode the commands that would run.
  returned: always
  type: list
  elements: str
  sample: ["/sbin/zfs create -p -o compression=lz4 tank/shared"]
diff:
  description: State and requested properties before and after, as ZFS reports them (C(-p)).
  returned: always
  type: dict
  sample:
    before: {state: present, properties: {quota: "0"}}
    after: {state: present, properties: {quota: 100G}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpunas.platform.plugins.module_utils import _blockdev, _zfs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            properties=dict(type='dict', default={}),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    name = module.params['name']
    if '@' in name or '/' not in name:
        module.fail_json(msg=f'name: {name!r} is not a dataset below a pool (pool/name, no @snapshot)')
    zfs = module.get_bin_path('zfs', required=True)
    runner = _blockdev.CommandRunner(module)
    result = {'changed': False, 'name': name, 'commands': runner.commands, 'diff': {'before': {}, 'after': {}}}
    props = {key: _zfs.zfs_value(value) for key, value in module.params['properties'].items()}
    rc, _out, _err = runner.run([zfs, 'list', '-H', '-o', 'name', name], ok_rcs=(0, 1))
    exists = rc == 0
    if module.params['state'] == 'absent':
        result['diff'] = {'before': {'state': 'present' if exists else 'absent'}, 'after': {'state': 'absent'}}
        if exists:
            if not module.params['force']:
                module.fail_json(msg=f'Refusing to destroy dataset {name}: state=absent needs force=true (safe mode)',
                                 commands=[])
            argv = [zfs, 'destroy', name]
            if module.check_mode:
                result['commands'].append(' '.join(argv))
            else:
                runner.run(argv, changes=True)
            result['changed'] = True
        module.exit_json(**result)
    if not exists:
        argv = [zfs, 'create', '-p', *_zfs.property_args('-o', props), name]
        if module.check_mode:
            result['commands'].append(' '.join(argv))
        else:
            runner.run(argv, changes=True)
        result['changed'] = True
        result['diff'] = {'before': {'state': 'absent'}, 'after': {'state': 'present', 'properties': props}}
        module.exit_json(**result)
    current = {}
    if props:
        argv = [zfs, 'get', '-H', '-p', '-o', 'property,value,source', ','.join(sorted(props)), name]
        _rc, out, _err = runner.run(argv)
        current = _zfs.parse_get(out)
    changes = _zfs.property_changes(props, current)
    for prop, (_before, after) in changes.items():
        argv = [zfs, 'set', f'{prop}={after}', name]
        if module.check_mode:
            result['commands'].append(' '.join(argv))
        else:
            runner.run(argv, changes=True)
    before = {prop: value for prop, (value, _source) in sorted(current.items())}
    after = dict(before)
    after.update((prop, value) for prop, (_before, value) in changes.items())
    result['diff'] = {'before': {'state': 'present', 'properties': before},
                      'after': {'state': 'present', 'properties': after}}
    result['changed'] = bool(changes)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
