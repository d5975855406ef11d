"""The module_calls callback counts what ran on the host: one per task, one per loop item that ran,
nothing for skipped items, controller-only actions or tasks delegated to the controller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = """\
- name: Module runs of every kind
  hosts: all
  gather_facts: true
  tasks:
    - name: Controller only
      ansible.builtin.debug:
        msg: not counted
    - name: One module run
      ansible.builtin.command: "true"
      changed_when: false
    - name: Two of three items run
      ansible.builtin.command: "echo {{ item }}"
      loop: [1, 2, 3]
      when: item != 2
      changed_when: false
    - name: Delegated to the controller
      ansible.builtin.stat:
        path: /
      delegate_to: localhost
    - name: Also controller only
      ansible.builtin.assert:
        that:
          - true
"""


def test_counts_module_runs_per_host(tmp_path: Path) -> None:
    playbook = tmp_path / "calls.yml"
    playbook.write_text(PLAYBOOK)
    log = tmp_path / "calls.jsonl"
    env = {
        **os.environ,
        "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "tools" / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "module_calls",
        "GPUNAS_MODULE_CALLS_LOG": str(log),
        "MOLECULE_SCENARIO_NAME": "unit",
    }
    run = subprocess.run(
        [
            Path(sys.executable).with_name("ansible-playbook"),
            "-i", "testhost,", "-c", "local",
            "-e", f"ansible_python_interpreter={sys.executable}",
            playbook,
        ],
        env=env, capture_output=True, text=True, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "module calls: testhost 4 (calls.yml)" in run.stdout
    record = json.loads(log.read_text())
    assert record["scenario"] == "unit"
    assert record["calls"] == {"testhost": 4}
    assert dict(record["top_tasks"]) == {"testhost: Two of three items run": 2, "testhost: One module run": 1,
                                         "testhost: Gathering Facts": 1}
