"""A role's boolean set to false from outside the role really is false.

``-e name=false`` and an INI inventory hand the play the string ``"false"``. These tests run the
role's own task (taken from its task file, so a change there is what runs here) in a throw-away
play on the controller, with only the variables it needs, and look at whether it ran."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def role_task(path: str, name: str) -> dict[str, object]:
    tasks = yaml.safe_load((ROOT / path).read_text())
    return next(t for t in tasks if t.get("name") == name)


# The role's gate of its reboot path (reboot_once.yml), with its own condition, in front of a debug task.
GATE = role_task("roles/nvidia_driver/tasks/load.yml", "Refuse a second reboot for the same reason")
REBOOT = {"name": GATE["name"], "ansible.builtin.debug": {"msg": "the reboot path runs"}, "when": GATE["when"]}

CASES = {
    "extra var false": ("localhost\n", ["-e", "nvidia_driver_reboot=false"], "skipped"),
    "extra var no": ("localhost\n", ["-e", "nvidia_driver_reboot=no"], "skipped"),
    "extra var true": ("localhost\n", ["-e", "nvidia_driver_reboot=true"], "ran"),
    "INI host line false": ("localhost nvidia_driver_reboot=false\n", [], "skipped"),
    "INI group vars false": ("localhost\n[all:vars]\nnvidia_driver_reboot=false\n", [], "skipped"),
    "INI group vars true": ("localhost\n[all:vars]\nnvidia_driver_reboot=true\n", [], "ran"),
}


@pytest.mark.parametrize(("inventory", "extra", "expected"), CASES.values(), ids=CASES.keys())
def test_reboot_follows_nvidia_driver_reboot(tmp_path: Path, inventory: str, extra: list[str], expected: str) -> None:
    play = {
        "name": "The role's reboot request alone",
        "hosts": "all",
        "connection": "local",
        "gather_facts": False,
        "vars": {"nvidia_driver_status": "reboot_required", "__nvidia_driver_built": {"stdout": "535.261.03"}},
        "tasks": [REBOOT],
    }
    (tmp_path / "play.yml").write_text(yaml.safe_dump([play], sort_keys=False))
    (tmp_path / "hosts.ini").write_text(inventory)
    env = {
        **os.environ,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_HOME": str(tmp_path / "home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
    }
    run = subprocess.run(
        ["ansible-playbook", "-i", "hosts.ini", "play.yml", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    tasks = json.loads(run.stdout)["plays"][0]["tasks"]
    asked = tasks[0]["hosts"]["localhost"]
    assert ("skipped" if asked.get("skipped") else "ran") == expected
