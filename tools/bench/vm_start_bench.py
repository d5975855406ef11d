#!/usr/bin/env python3
# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long a VM test host takes from `testhosts.py up` to SSH ready: from the saved state and
booting its kernel (GPUNAS_VM_COLD_BOOT=1), rounds alternating, medians printed.

    tools/bench/vm_start_bench.py [--rounds 5] [--disks 4] [--memory-mib 2048]

The saved state of the shape is made first, outside the timed rounds (it is made once per image).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTHOSTS = Path(__file__).resolve().parents[2] / 'tools' / 'testhosts' / 'testhosts.py'


def start(platform: dict, cold: bool) -> float:
    env = {**os.environ, 'GPUNAS_VM_COLD_BOOT': '1' if cold else '0'}
    with tempfile.TemporaryDirectory(prefix='vm-start-bench.') as state:
        started = time.monotonic()
        subprocess.run([sys.executable, str(TESTHOSTS), 'up', '--state-dir', state, '--platforms',
                        json.dumps([platform])], env=env, check=True, capture_output=True)
        elapsed = time.monotonic() - started
        subprocess.run([sys.executable, str(TESTHOSTS), 'down', '--state-dir', state], check=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--disks', type=int, default=4)
    parser.add_argument('--memory-mib', type=int, default=2048)
    args = parser.parse_args()
    platform = {'name': 'bench-start', 'disks': args.disks, 'disk_size': '256M', 'memory_mib': args.memory_mib}
    start(platform, cold=False)
    times: dict[str, list[float]] = {'saved state': [], 'cold boot': []}
    for _ in range(args.rounds):
        times['saved state'].append(start(platform, cold=False))
        times['cold boot'].append(start(platform, cold=True))
    load = ' '.join(f'{x:.2f}' for x in os.getloadavg())
    print(f'VM start, up to SSH ready, {args.rounds} rounds, {args.disks} disks, {args.memory_mib} MiB '
          f'(load average now {load}, {os.cpu_count()} CPUs)')
    for kind, values in times.items():
        print(f'{kind:<12} median {statistics.median(values):6.1f} s   '
              f'min {min(values):6.1f}   max {max(values):6.1f}   all {" ".join(f"{v:.1f}" for v in values)}')
    ratio = statistics.median(times['cold boot']) / statistics.median(times['saved state'])
    print(f'cold boot / saved state: {ratio:.1f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
