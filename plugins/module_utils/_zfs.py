# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parsing and planning for ZFS pools and datasets.

A pool layout is compared as data: each top-level vdev becomes ``(role, type, disks)`` with
the disks as real kernel paths, so a pool created with ``/dev/vdb`` matches an inventory that
names ``/dev/disk/by-id/virtio-disk0`` and the other way round.
"""

from __future__ import annotations

import re

VDEV_TYPES = ('stripe', 'mirror', 'raidz', 'raidz1', 'raidz2', 'raidz3')
VDEV_ROLES = ('data', 'log', 'special', 'dedup', 'cache', 'spare')
# Smallest number of disks ZFS accepts for each group type.
MIN_DISKS = {'stripe': 1, 'mirror': 2, 'raidz1': 2, 'raidz2': 3, 'raidz3': 4}
STATUS_CLASSES = {'logs': 'log', 'cache': 'cache', 'spares': 'spare', 'special': 'special', 'dedup': 'dedup'}
GROUP_RE = re.compile(r'^(mirror|raidz[123]|draid\S*)-\d+$')
SIZE_RE = re.compile(r'^(\d+(?:\.\d+)?)\s*([KMGTPE]?)i?B?$', re.IGNORECASE)
SIZE_PROPERTIES = frozenset((
    'quota', 'refquota', 'reservation', 'refreservation', 'recordsize', 'volsize', 'volblocksize',
    'special_small_blocks', 'filesystem_limit', 'snapshot_limit',
))
NONE_IS_ZERO = frozenset(('quota', 'refquota', 'reservation', 'refreservation', 'filesystem_limit', 'snapshot_limit'))
# Properties whose values come from a fixed table (ZFS "index" properties): OpenZFS
# module/zcommon/zfs_prop.c (zprop_register_index) and zpool_prop.c, listed in zfsprops(7) and
# zpoolprops(7). Only these may be compared ignoring case; a path (mountpoint), share options or
# a user property (``module:name``) keeps its case.
ENUM_PROPERTIES = frozenset((
    # datasets
    'aclinherit', 'aclmode', 'acltype', 'atime', 'canmount', 'casesensitivity', 'checksum', 'compression',
    'copies', 'dedup', 'devices', 'dnodesize', 'encryption', 'exec', 'keyformat', 'logbias', 'nbmand',
    'normalization', 'overlay', 'primarycache', 'readonly', 'redundant_metadata', 'relatime', 'secondarycache',
    'setuid', 'snapdev', 'snapdir', 'sync', 'utf8only', 'version', 'volmode', 'vscan', 'xattr', 'zoned',
    # pools
    'autoexpand', 'autoreplace', 'autotrim', 'delegation', 'failmode', 'listsnapshots', 'multihost',
))


class LayoutError(ValueError):
    """The requested layout is invalid; the message names the bad field."""


def canonical_type(vdev_type):
    return 'raidz1' if vdev_type == 'raidz' else vdev_type


def validate_vdevs(vdevs):
    """Check the requested vdev list before anything runs; raise LayoutError naming the field."""
    if not vdevs:
        raise LayoutError('vdevs: at least one vdev is required to create a pool')
    seen = {}
    data = 0
    for index, vdev in enumerate(vdevs):
        field = f'vdevs[{index}]'
        role = vdev.get('role') or 'data'
        vtype = canonical_type(vdev.get('type') or 'stripe')
        disks = vdev.get('disks') or []
        if role not in VDEV_ROLES:
            raise LayoutError(f"{field}.role: unknown role {role!r} (expected one of {', '.join(VDEV_ROLES)})")
        if vtype not in MIN_DISKS:
            raise LayoutError(f"{field}.type: unknown layout {vdev.get('type')!r} "
                              f"(expected one of {', '.join(VDEV_TYPES)})")
        if role in ('cache', 'spare') and vtype != 'stripe':
            raise LayoutError(f'{field}.type: {role} devices cannot be grouped as {vtype}')
        if len(disks) < MIN_DISKS[vtype]:
            raise LayoutError(f'{field}.disks: {vtype} needs at least {MIN_DISKS[vtype]} disks, got {len(disks)}')
        for disk in disks:
            if disk in seen:
                raise LayoutError(f'{field}.disks: {disk} is already used in {seen[disk]}')
            seen[disk] = field
        data += role == 'data'
    if not data:
        raise LayoutError('vdevs: a pool needs at least one data vdev')


def requested_layout(vdevs, resolve):
    """Normalise requested vdevs into sorted ``(role, type, disks)`` tuples of real paths.

    A ``stripe`` vdev with several disks is several single-disk top-level vdevs, exactly as
    ``zpool create tank a b`` makes them, so it is expanded here.
    """
    layout = []
    for vdev in vdevs:
        role = vdev.get('role') or 'data'
        vtype = canonical_type(vdev.get('type') or 'stripe')
        disks = [resolve(disk) for disk in vdev['disks']]
        if vtype == 'stripe':
            layout.extend((role, 'disk', (disk,)) for disk in disks)
        else:
            layout.append((role, vtype, tuple(sorted(disks))))
    return sorted(layout)


def parse_zpool_status(text):
    """Parse ``zpool status -P -L <pool>`` into ``{'name', 'state', 'vdevs'}``.

    ``vdevs`` is a list of ``{'role', 'type', 'disks'}`` in the order printed; leaf disks of a
    ``replacing-N``/``spare-N`` sub-group are kept under their top-level vdev.
    """
    pool = {'name': None, 'state': None, 'vdevs': []}
    in_config = False
    role = None
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if not in_config:
            if stripped.startswith('pool:'):
                pool['name'] = stripped.split(':', 1)[1].strip()
            elif stripped.startswith('state:'):
                pool['state'] = stripped.split(':', 1)[1].strip()
            elif stripped == 'config:':
                in_config = True
            continue
        if not line.startswith('\t'):
            if stripped:
                in_config = False
            continue
        body = line[1:]
        indent = len(body) - len(body.lstrip(' '))
        name = body.split()[0]
        if indent == 0:
            if name == 'NAME':
                continue
            role = 'data' if name == pool['name'] else STATUS_CLASSES.get(name)
            current = None
        elif role is None:
            continue
        elif indent == 2:
            match = GROUP_RE.match(name)
            if match:
                current = {'role': role, 'type': match.group(1), 'disks': []}
            else:
                current = {'role': role, 'type': 'disk', 'disks': [name]}
            pool['vdevs'].append(current)
        elif current is not None and name.startswith('/'):
            current['disks'].append(name)
    return pool


def actual_layout(status_vdevs, wanted, resolve, parent_disk):
    """Normalise parsed status vdevs, mapping a whole-disk partition back to its disk.

    ZFS partitions a whole disk it is given (``/dev/vdb`` shows as ``/dev/vdb1``, with a small
    ``/dev/vdb9``). Partition 1 of a disk is reported as the disk unless the request names the
    partition itself; any other partition stays a partition, so a pool on ``/dev/vdb2`` never
    matches a request for ``/dev/vdb``.
    """
    layout = []
    for vdev in status_vdevs:
        disks = []
        for disk in vdev['disks']:
            real = resolve(disk)
            disk_of_first = parent_disk(real, first_only=True)
            disks.append(disk_of_first if disk_of_first and real not in wanted else real)
        layout.append((vdev['role'], vdev['type'], tuple(sorted(disks))))
    return sorted(layout)


def plan_layout(actual, requested):
    """Compare layouts; return ``(missing, extra)`` lists of vdev tuples."""
    missing = [vdev for vdev in requested if vdev not in actual]
    extra = [vdev for vdev in actual if vdev not in requested]
    return missing, extra


def describe_vdev(vdev):
    role, vtype, disks = vdev
    return '{} {} [{}]'.format(role, vtype, ', '.join(disks))


def vdev_args(vdevs, names):
    """``zpool create``/``add`` arguments for normalised vdev tuples, grouped by role.

    ``names`` maps each real path back to the name the inventory gave, so the pool records
    stable ``/dev/disk/by-id`` paths when the inventory uses them.
    """
    args = []
    for role in VDEV_ROLES:
        members = [vdev for vdev in vdevs if vdev[0] == role]
        if not members:
            continue
        if role != 'data':
            args.append(role)
        for _role, vtype, disks in members:
            if vtype != 'disk':
                args.append(vtype)
            args.extend(names.get(disk, disk) for disk in disks)
    return args


def property_args(flag, properties):
    args = []
    for key in sorted(properties):
        args.extend([flag, f'{key}={properties[key]}'])
    return args


def zfs_value(value):
    """Render a requested property value the way ``zfs``/``zpool`` take it."""
    if isinstance(value, bool):
        return 'on' if value else 'off'
    return str(value)


def size_bytes(value):
    """``'10G'`` -> 10737418240; None when ``value`` is not a size."""
    match = SIZE_RE.match(str(value).strip())
    if not match:
        return None
    number, unit = match.groups()
    return int(float(number) * (1024 ** ' KMGTPE'.index(unit.upper() or ' ')))


def same_value(prop, requested, current):
    """Compare a requested property with the ``-p`` (parsable) value the tool reports."""
    requested = zfs_value(requested)
    if requested == current:
        return True
    if prop in NONE_IS_ZERO and requested.lower() == 'none' and current in ('0', 'none'):
        return True
    if prop in SIZE_PROPERTIES:
        return size_bytes(requested) is not None and size_bytes(requested) == size_bytes(current)
    return prop in ENUM_PROPERTIES and requested.lower() == current.lower()


def parse_get(text):
    """Parse ``zfs get``/``zpool get -H -p -o property,value,source`` into ``{prop: (value, source)}``.

    ``zpool get`` has no ``-o``; its ``-H -p`` lines are ``name property value source``, and
    the pool name column is dropped here.
    """
    result = {}
    for line in text.splitlines():
        fields = line.split('\t')
        if len(fields) == 4:
            fields = fields[1:]
        if len(fields) == 3:
            result[fields[0]] = (fields[1], fields[2])
    return result


def property_changes(requested, current):
    """Return ``{prop: (before, after)}`` for requested properties that differ from ``current``."""
    changes = {}
    for prop in sorted(requested):
        value = zfs_value(requested[prop])
        before = current.get(prop, (None, None))[0]
        if before is None or not same_value(prop, value, before):
            changes[prop] = (before, value)
    return changes
