# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk safety probe and device-name resolution shared by the storage modules.

The parsers are pure functions over the text the tools print; ``probe_disk`` is the only
part that runs commands. A disk is "in use" when any probe finds something on it, and the
findings are worded so a refusal can name the disk and what was found.
"""

from __future__ import annotations

import json
import os

BY_ID_DIR = '/dev/disk/by-id'
SYSFS_BLOCK = '/sys/class/block'
# Root of the file system the device paths live in: '' on a host; unit tests point it at a tree
# with the same layout (dev/, dev/disk/by-id/ links, sys/class/block/) built from real captures.
ROOT = ''

LSBLK_COLUMNS = 'NAME,PATH,TYPE,FSTYPE,LABEL,PTTYPE,MOUNTPOINT'


class CommandRunner:
    """Run one CLI with ``LC_ALL=C``; remember the commands that changed something."""

    def __init__(self, module):
        self.module = module
        self.commands = []

    def run(self, argv, ok_rcs=(0,), changes=False):
        if changes:
            self.commands.append(' '.join(argv))
        rc, out, err = self.module.run_command(argv, environ_update={'LC_ALL': 'C', 'LANG': 'C'})
        if ok_rcs is not None and rc not in ok_rcs:
            self.module.fail_json(
                msg=f"Command {' '.join(argv)} failed with rc {rc}: {(err or out).strip()}",
                rc=rc, stdout=out, stderr=err, commands=self.commands)
        return rc, out, err


def parse_key_values(text):
    """Parse ``KEY=value`` lines (``blkid -o export``, ``mdadm --export``)."""
    result = {}
    for line in text.splitlines():
        key, sep, value = line.partition('=')
        if sep and key.strip():
            result[key.strip()] = value.strip()
    return result


def parse_lsblk(text):
    """Flatten ``lsblk --json`` output into a list of device dicts, children after parents."""
    devices = []

    def walk(nodes, parent):
        for node in nodes:
            entry = {key: node.get(key) for key in ('name', 'path', 'type', 'fstype', 'label', 'pttype', 'mountpoint')}
            entry['parent'] = parent
            devices.append(entry)
            walk(node.get('children') or [], node.get('name'))

    walk(json.loads(text).get('blockdevices') or [], None)
    return devices


def parse_wipefs(text):
    """Signatures listed by ``wipefs --no-act --json`` as ``(type, offset)`` pairs."""
    if not text.strip():
        return []
    return [(sig.get('type'), sig.get('offset')) for sig in json.loads(text).get('signatures') or []]


def parse_zdb_labels(text):
    """Pool names found in ``zdb -l`` output (an empty list when no label unpacked)."""
    names = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith('name:'):
            name = stripped.split(':', 1)[1].strip().strip("'")
            if name not in names:
                names.append(name)
    return names


def assess(lsblk_devices, blkid, wipefs_signatures, md_examine, zdb_pools, holders):
    """Return a list of human-readable reasons why a disk must not be overwritten.

    Every argument is the parsed output of one probe; an empty list means the disk looks blank.
    """
    findings = []
    disk = lsblk_devices[0] if lsblk_devices else {}
    pttype = disk.get('pttype') or blkid.get('PTTYPE')
    if pttype:
        findings.append(f'partition table ({pttype})')
    fstype = disk.get('fstype') or blkid.get('TYPE')
    if fstype:
        label = disk.get('label') or blkid.get('LABEL')
        findings.append('{} signature{}'.format(fstype, f" (label '{label}')" if label else ''))
    if disk.get('mountpoint'):
        findings.append('mounted at {}'.format(disk['mountpoint']))
    for child in lsblk_devices[1:]:
        what = child.get('type') or 'device'
        detail = []
        if child.get('fstype'):
            detail.append(child['fstype'] + (" '{}'".format(child['label']) if child.get('label') else ''))
        if child.get('mountpoint'):
            detail.append('mounted at {}'.format(child['mountpoint']))
        findings.append('{} {}{}'.format(what, child.get('name'), ' ({})'.format(', '.join(detail)) if detail else ''))
    known = {(fstype or '').lower(), (pttype or '').lower()}
    for sig_type, offset in wipefs_signatures:
        if sig_type and sig_type.lower() not in known:
            findings.append(f'{sig_type} signature at offset {offset}')
            known.add(sig_type.lower())
    if md_examine:
        name = md_examine.get('MD_NAME') or md_examine.get('MD_UUID') or 'unknown'
        findings.append('md superblock (array {}, {})'.format(name, md_examine.get('MD_LEVEL', 'unknown level')))
    for pool in zdb_pools:
        findings.append(f"ZFS label (pool '{pool}')")
    for holder in holders:
        findings.append(f'held by {holder}')
    return findings


def _host(path):
    return ROOT + path


def _device(path):
    return path[len(ROOT):] if ROOT and path.startswith(ROOT) else path


def holders_of(dev):
    """Kernel devices stacked on ``dev`` (md arrays, device-mapper) from sysfs."""
    path = _host(os.path.join(SYSFS_BLOCK, os.path.basename(resolve(dev)), 'holders'))
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def probe_disk(runner, bins, dev):
    """Run every probe on ``dev`` and return the list of findings (empty: safe to use).

    A probe that cannot read the disk is itself a finding: what cannot be checked is not blank.

    ``bins`` maps tool names (lsblk, blkid, wipefs, mdadm, zdb) to paths; mdadm and zdb may be
    None when not installed, and their probes are then skipped.
    """
    _rc, out, _err = runner.run([bins['lsblk'], '--json', '--bytes', '--output', LSBLK_COLUMNS, dev])
    lsblk_devices = parse_lsblk(out)
    unreadable = []
    rc, out, err = runner.run([bins['blkid'], '-p', '-o', 'export', dev], ok_rcs=None)
    blkid = parse_key_values(out) if rc == 0 else {}
    if rc not in (0, 2):
        unreadable.append(f'blkid -p failed ({(err or out).strip()})')
    rc, out, err = runner.run([bins['wipefs'], '--no-act', '--json', dev], ok_rcs=None)
    signatures = parse_wipefs(out) if rc == 0 else []
    if rc != 0:
        unreadable.append(f'wipefs failed ({(err or out).strip()})')
    md_examine = {}
    if bins.get('mdadm'):
        rc, out, _err = runner.run([bins['mdadm'], '--examine', '--export', dev], ok_rcs=(0, 1))
        md_examine = parse_key_values(out) if rc == 0 else {}
    zdb_pools = []
    if bins.get('zdb'):
        rc, out, _err = runner.run([bins['zdb'], '-l', dev], ok_rcs=None)
        zdb_pools = parse_zdb_labels(out) if rc == 0 else []
    return assess(lsblk_devices, blkid, signatures, md_examine, zdb_pools, holders_of(dev)) + unreadable


def expand(name):
    """Absolute path of a disk given as ``/dev/...``, a ``by-id`` name or a short name (``vdb``)."""
    if name.startswith('/'):
        return name
    candidate = os.path.join(BY_ID_DIR, name)
    return candidate if os.path.lexists(_host(candidate)) else os.path.join('/dev', name)


def resolve(name):
    """Real kernel path of a disk name (links followed, e.g. ``virtio-disk0`` -> ``/dev/vdb``)."""
    return _device(os.path.realpath(_host(expand(name))))


def missing_disks(names):
    """Names from ``names`` that have no device node or link."""
    return [name for name in names if not os.path.lexists(_host(expand(name)))]


def parent_disk(dev, first_only=False):
    """Whole disk holding partition ``dev`` (``/dev/vdb1`` -> ``/dev/vdb``), or None for a disk.

    With ``first_only`` only partition 1 counts: the partition ZFS makes on a disk it is given whole.
    """
    node = _host(os.path.join(SYSFS_BLOCK, os.path.basename(dev)))
    try:
        with open(os.path.join(node, 'partition')) as handle:
            number = handle.read().strip()
    except OSError:
        return None
    if first_only and number != '1':
        return None
    return os.path.join(os.path.dirname(dev), os.path.basename(os.path.dirname(os.path.realpath(node))))
