# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take a dated snapshot of one ZFS dataset and prune old ones that this tool made.

Snapshots are named ``<dataset>@<prefix>-YYYYmmdd-HHMMSS`` (UTC). Pruning only ever considers
snapshots of that exact dataset whose name is the prefix followed by a valid timestamp, keeps
the newest ``--keep`` of them and destroys the rest one by one (never recursively), so
snapshots made by hand or by other tools are never touched.
"""

import argparse
import datetime
import re
import subprocess
import sys

STAMP = '%Y%m%d-%H%M%S'


def snapshot_name(dataset, prefix, now):
    return f'{dataset}@{prefix}-{now.strftime(STAMP)}'


def select_for_pruning(dataset, prefix, names, keep):
    """Names (from ``zfs list -t snapshot -H -o name``) to destroy, oldest first."""
    pattern = re.compile(r'^' + re.escape(dataset) + '@' + re.escape(prefix) + r'-(\d{8}-\d{6})$')
    ours = []
    for name in names:
        match = pattern.match(name.strip())
        if not match:
            continue
        try:
            stamp = datetime.datetime.strptime(match.group(1), STAMP)
        except ValueError:
            continue
        ours.append((stamp, name.strip()))
    ours.sort()
    return [name for _stamp, name in ours[:max(len(ours) - keep, 0)]]


def run(argv):
    env = {'LC_ALL': 'C', 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'}
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dataset', required=True)
    parser.add_argument('--prefix', required=True)
    parser.add_argument('--keep', type=int, required=True)
    args = parser.parse_args(argv)
    if args.keep < 1 or not re.match(r'^[A-Za-z0-9_.:-]+$', args.prefix):
        parser.error('--keep must be at least 1 and --prefix a plain word')
    name = snapshot_name(args.dataset, args.prefix, datetime.datetime.now(datetime.timezone.utc))
    run(['zfs', 'snapshot', name])
    print(f'created {name}')
    listed = run(['zfs', 'list', '-H', '-t', 'snapshot', '-o', 'name', '-d', '1', args.dataset]).splitlines()
    for old in select_for_pruning(args.dataset, args.prefix, listed, args.keep):
        run(['zfs', 'destroy', old])
        print(f'destroyed {old}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
