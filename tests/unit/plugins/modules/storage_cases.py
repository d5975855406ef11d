# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runner of the storage modules' data-driven cases (zfs_pool, zfs_dataset, mdadm_array).

Each case runs the real module against a device tree laid out like the VM's (dev/vdX nodes,
dev/disk/by-id links, sys/class/block partition entries) and answers each command with the
output recorded on the VM (tests/unit/fixtures/storage, provenance in fixtures.meta.yml). The
exact command sequence is asserted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpunas.platform.plugins.module_utils import _blockdev

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures' / 'storage'


def load_cases(path):
    return yaml.safe_load(Path(path).read_text())


def build_tree(root, tree):
    """Create dev nodes, by-id links and sysfs partition entries as udev and the kernel do."""
    for disk in tree.get('disks', []):
        (root / 'dev').mkdir(exist_ok=True)
        (root / 'dev' / disk).touch()
        node = root / 'sys' / 'devices' / 'virtio' / 'block' / disk
        node.mkdir(parents=True)
        (root / 'sys' / 'class' / 'block').mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(node, root / 'sys' / 'class' / 'block'), root / 'sys' / 'class' / 'block' / disk)
        for part in tree.get('partitions', {}).get(disk, []):
            (node / part).mkdir()
            (node / part / 'partition').write_text(part[len(disk):] + '\n')
            (root / 'dev' / part).touch()
            os.symlink(os.path.relpath(node / part, root / 'sys' / 'class' / 'block'),
                       root / 'sys' / 'class' / 'block' / part)
    by_id = root / 'dev' / 'disk' / 'by-id'
    by_id.mkdir(parents=True, exist_ok=True)
    for name, target in tree.get('by_id', {}).items():
        os.symlink('../../' + target, by_id / name)


RECORDED_RC = {
    line.split()[0]: int(line.split()[1])
    for line in (FIXTURES / 'vm' / 'rc.txt').read_text().splitlines() if line.strip()
}


def recorded(name):
    """stdout, stderr and exit status of one command recorded in the VM (fixtures/storage/vm)."""
    stderr = FIXTURES / 'vm' / (name + '.stderr')
    return ((FIXTURES / 'vm' / name).read_text(), stderr.read_text() if stderr.exists() else '',
            RECORDED_RC[name])


def expand_steps(steps, bins):
    """Turn ``probe`` shorthands into the five probe commands of _blockdev.probe_disk."""
    expanded = []
    for step in steps:
        if 'probe' not in step:
            expanded.append(step)
            continue
        disk, capture = step['probe']['disk'], step['probe']['capture']
        expanded += [
            {'argv': [bins['lsblk'], '--json', '--bytes', '--output', _blockdev.LSBLK_COLUMNS, disk],
             'capture': f'lsblk.{capture}.json'},
            {'argv': [bins['blkid'], '-p', '-o', 'export', disk], 'capture': f'blkid.{capture}.txt'},
            {'argv': [bins['wipefs'], '--no-act', '--json', disk], 'capture': f'wipefs.{capture}.json'},
        ]
        if bins.get('mdadm'):
            expanded.append({'argv': [bins['mdadm'], '--examine', '--export', disk],
                             'capture': f'mdadm-examine.{capture}.txt'})
        if bins.get('zdb'):
            expanded.append({'argv': [bins['zdb'], '-l', disk], 'capture': f'zdb-l.{capture}.txt'})
    return expanded


def answer(step):
    if 'capture' in step:
        stdout, stderr, rc = recorded(step['capture'])
        return step.get('rc', rc), stdout, stderr
    return step.get('rc', 0), '', ''


def run_case(modules, case, tmp_path, monkeypatch, capsys):
    """Run one case against the first of ``modules`` (or the one it names); return the module result."""
    root = tmp_path.resolve()
    build_tree(root, case.get('tree', {}))
    monkeypatch.setattr(_blockdev, 'ROOT', str(root))
    bins = case.get('binaries', {})
    expected = expand_steps(case['commands'], bins)
    seen = []

    def run_command(self, args, **kwargs):
        assert kwargs.get('environ_update', {}).get('LC_ALL') == 'C'
        assert len(seen) < len(expected), f'unexpected command {args}'
        step = expected[len(seen)]
        seen.append(args)
        assert args == step['argv']
        return answer(step)

    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                        lambda self, name, required=False, opt_dirs=None: bins.get(name))
    args = dict(case['params'], _ansible_check_mode=case.get('check_mode', False))
    with patch_module_args(args), pytest.raises(SystemExit):
        modules[case.get('module', next(iter(modules)))].main()
    result = json.loads(capsys.readouterr().out)
    assert seen == [step['argv'] for step in expected]
    return result


def check_case(modules, case, tmp_path, monkeypatch, capsys):
    """Run one case and check the module's result against what the case expects."""
    result = run_case(modules, case, tmp_path, monkeypatch, capsys)
    if 'failed' in case:
        assert result.get('failed') is True, result
        for fragment in case['failed']:
            assert fragment in result['msg']
    else:
        assert not result.get('failed'), result.get('msg')
    for key, value in case.get('result', {}).items():
        assert result[key] == value, key
