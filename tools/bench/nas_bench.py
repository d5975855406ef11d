#!/usr/bin/env python3
# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge and re-run times of the NAS examples on a VM test host (median of N rounds).

Each round boots a fresh VM (tools/testhosts) with blank disks, runs the example's converge
playbook (the one its Molecule scenario uses) once on the blank disks and once more, and records
both wall times and the recap's changed count. The re-run must report changed=0; a round where it
does not is reported as a failure. Prints a table and exits non-zero on any failure.

    tools/bench/nas_bench.py [--rounds 3] [--example zfs] [--example mdraid]

Run it under the VM lock: flock /tmp/gpunas-vm.lock tools/bench/nas_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTHOSTS = REPO / 'tools' / 'testhosts' / 'testhosts.py'
EXAMPLES = {
    'zfs': {'playbook': REPO / 'molecule' / 'zfs' / 'converge.yml', 'disks': 6, 'disk_size': '256M',
            'memory_mib': 2048},
    'mdraid': {'playbook': REPO / 'molecule' / 'mdraid' / 'converge.yml', 'disks': 5, 'disk_size': '256M',
               'memory_mib': 1024},
}
RECAP = re.compile(r'ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)')


def run_playbook(inventory: Path, playbook: Path, env: dict) -> tuple[float, int, str]:
    started = time.monotonic()
    proc = subprocess.run(['ansible-playbook', '-i', str(inventory), str(playbook)],
                          capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    match = RECAP.search(proc.stdout)
    if proc.returncode != 0 or not match or int(match.group(4)) or int(match.group(3)):
        raise RuntimeError(f'{playbook} failed (rc {proc.returncode}):\n' + '\n'.join(proc.stdout.splitlines()[-30:]))
    return elapsed, int(match.group(2)), proc.stdout


def one_round(name: str, spec: dict, state: Path, env: dict) -> dict:
    platform = {'name': f'bench-{name}', 'disks': spec['disks'], 'disk_size': spec['disk_size'],
                'memory_mib': spec['memory_mib']}
    up = subprocess.run([sys.executable, str(TESTHOSTS), 'up', '--state-dir', str(state),
                         '--platforms', json.dumps([platform])], capture_output=True, text=True, check=True)
    try:
        config = json.loads(up.stdout)[0]
        inventory = state / 'inventory.yml'
        inventory.write_text(json.dumps({'all': {'hosts': {config['instance']: {
            'ansible_host': config['address'], 'ansible_port': config['port'], 'ansible_user': config['user'],
            'ansible_ssh_private_key_file': config['identity_file'],
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null',
        }}, 'children': {'vms': {'hosts': {config['instance']: {}}}}}}))
        converge, changed_first, _out = run_playbook(inventory, spec['playbook'], env)
        rerun, changed_again, _out = run_playbook(inventory, spec['playbook'], env)
    finally:
        subprocess.run([sys.executable, str(TESTHOSTS), 'down', '--state-dir', str(state)], check=False)
    return {'converge': converge, 'rerun': rerun, 'changed_first': changed_first, 'changed_again': changed_again}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--example', action='append', choices=sorted(EXAMPLES))
    args = parser.parse_args()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / 'build' / 'collections'),
               ANSIBLE_PIPELINING='true', ANSIBLE_GATHERING='explicit', ANSIBLE_HOST_KEY_CHECKING='false',
               ANSIBLE_FORCE_COLOR='false')
    failures = 0
    print(f"{'example':8} {'round':>5} {'converge s':>10} {'re-run s':>9} {'changed':>8} {'re-run changed':>14}")
    for name in args.example or sorted(EXAMPLES):
        rounds = []
        for index in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix=f'nas-bench-{name}-') as state:
                result = one_round(name, EXAMPLES[name], Path(state), env)
            rounds.append(result)
            failures += result['changed_again'] != 0
            print(f"{name:8} {index + 1:>5} {result['converge']:>10.1f} {result['rerun']:>9.1f} "
                  f"{result['changed_first']:>8} {result['changed_again']:>14}", flush=True)
        converge = statistics.median(r['converge'] for r in rounds)
        rerun = statistics.median(r['rerun'] for r in rounds)
        print(f"{name:8} {'median':>5} {converge:>10.1f} {rerun:>9.1f}   re-run/converge {rerun / converge:.2f}"
              f"   (load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs)")
    if failures:
        print(f'{failures} round(s) changed something on re-run', file=sys.stderr)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
