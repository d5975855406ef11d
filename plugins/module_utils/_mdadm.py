# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parsing and planning for Linux md arrays (mdadm 4.x)."""

from __future__ import annotations

import re

from ansible_collections.gpunas.platform.plugins.module_utils._blockdev import parse_key_values

LEVELS = ('0', '1', '4', '5', '6', '10')
MIN_DEVICES = {'0': 2, '1': 2, '4': 3, '5': 3, '6': 4, '10': 2}
# 0.90 superblocks carry no array name, which is how an array is found again (docs/storage.md).
METADATA = ('1.0', '1.1', '1.2')
NAME_RE = re.compile(r'^[A-Za-z0-9_.-]{1,32}$')
CHUNK_RE = re.compile(r'^\d+[KMG]?$', re.IGNORECASE)


class ArrayError(ValueError):
    """The requested array is invalid or cannot be reached safely; the message names the field."""


def validate(params):
    """Check the request before any command runs; raise ArrayError naming the bad field."""
    if not NAME_RE.match(params['name']):
        raise ArrayError(f"name: {params['name']!r} must be 1-32 characters of letters, digits, '.', '_' or '-'")
    if params['state'] != 'present':
        return
    level = params['level']
    if level is None:
        raise ArrayError('level: required to create or check an array')
    devices = params['devices']
    spares = params['spares']
    if len(devices) < MIN_DEVICES[level]:
        raise ArrayError(f'devices: RAID{level} needs at least {MIN_DEVICES[level]} devices, got {len(devices)}')
    if level == '0' and spares:
        raise ArrayError('spares: RAID0 has no redundancy and cannot use spares')
    seen = set()
    for field, disks in (('devices', devices), ('spares', spares)):
        for disk in disks:
            if disk in seen:
                raise ArrayError(f'{field}: {disk} is listed twice')
            seen.add(disk)
    if params['chunk'] and not CHUNK_RE.match(params['chunk']):
        raise ArrayError('chunk: {!r} is not a size like 512K'.format(params['chunk']))


def short_name(md_name):
    """``host:data`` -> ``data`` (mdadm prefixes the home host)."""
    return md_name.split(':', 1)[-1]


def parse_scan(text):
    """Parse ``mdadm --detail --scan`` ARRAY lines into a list of ``{'device', 'name', 'uuid', ...}``."""
    arrays = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] != 'ARRAY':
            continue
        entry = {'device': fields[1]}
        for field in fields[2:]:
            key, sep, value = field.partition('=')
            if sep:
                entry[key.lower()] = value
        arrays.append(entry)
    return arrays


def parse_detail(text):
    """Parse ``mdadm --detail --export`` into level, counts, uuid, name and member roles."""
    raw = parse_key_values(text)
    members = {}
    for key, value in raw.items():
        match = re.match(r'^MD_DEVICE_(.+)_DEV$', key)
        if match:
            members[value] = raw.get(f'MD_DEVICE_{match.group(1)}_ROLE', '')
    return {
        'level': raw.get('MD_LEVEL', ''),
        'raid_devices': int(raw.get('MD_DEVICES', '0') or 0),
        'metadata': raw.get('MD_METADATA', ''),
        'uuid': raw.get('MD_UUID', ''),
        'name': raw.get('MD_NAME', ''),
        'members': members,
    }


def parse_mdstat(text):
    """Parse ``/proc/mdstat`` into ``{md: {'state', 'level', 'members', 'progress'}}``."""
    arrays = {}
    current = None
    for line in text.splitlines():
        match = re.match(r'^(md\S+) : (\S+) (?:\((\S+)\) )?(raid\d+|linear)? ?(.*)$', line)
        if match:
            name, state, _ro, level, rest = match.groups()
            members = sorted(re.sub(r'\[\d+\].*$', '', item) for item in rest.split())
            current = arrays[name] = {'state': state, 'level': level or '', 'members': members, 'progress': None}
            continue
        progress = re.search(r'(resync|recovery|reshape|check)\s*=\s*([\d.]+)%', line)
        if current is not None and progress:
            current['progress'] = '{} {}%'.format(*progress.groups())
    return arrays


def name_device(detail):
    """``/dev/md/<name>``: the path udev gives a named array, whatever md number it has."""
    return '/dev/md/{}'.format(short_name(detail['name']))


def conf_line(detail):
    """The ``mdadm.conf`` ARRAY line that keeps the array's name across reboots.

    It always names ``/dev/md/<name>``: right after ``mdadm --create`` udev may not have made that
    link yet and ``mdadm --detail --scan`` prints ``/dev/md127``, which must not end up in the file.
    """
    return 'ARRAY {} metadata={} UUID={} name={}'.format(name_device(detail), detail['metadata'], detail['uuid'],
                                                         detail['name'])


def plan_existing(detail, level, wanted_devices, wanted_spares, grow):
    """Plan changes to a running array; returns ``(add_spares, add_devices, new_raid_devices)``.

    Raises ArrayError when the request would need a member removed or the level changed,
    which this module never does.
    """
    if detail['level'] != f'raid{level}':
        raise ArrayError(f"level: array is {detail['level']}, request says RAID{level}; refusing to change the level")
    members = set(detail['members'])
    wanted = set(wanted_devices) | set(wanted_spares)
    extra = sorted(members - wanted)
    if extra:
        raise ArrayError(f"devices: array has members the request lacks ({', '.join(extra)}); refusing to remove them")
    active = {dev for dev, role in detail['members'].items() if role.isdigit()}
    add_devices = sorted(set(wanted_devices) - members)
    add_spares = sorted(set(wanted_spares) - members)
    new_count = detail['raid_devices']
    if add_devices:
        if not grow:
            raise ArrayError(f"devices: {', '.join(add_devices)} not in the array; "
                             'set grow=true to add them as active devices')
        new_count = len(active) + len(add_devices)
    return add_spares, add_devices, new_count


def create_argv(mdadm, device, params, devices, spares):
    """``mdadm --create`` command for a new array (``--run``: the disks were probed blank)."""
    argv = [mdadm, '--create', device, '--run', '--level={}'.format(params['level']),
            f'--raid-devices={len(devices)}', f"--metadata={params['metadata']}", f"--name={params['name']}"]
    if params['chunk'] and params['level'] != '1':
        argv.append('--chunk={}'.format(params['chunk']))
    if spares:
        argv.append(f'--spare-devices={len(spares)}')
    return argv + list(devices) + list(spares)
