"""The Molecule task files that expect a role to refuse an input fail when the role accepts it.

Each file is run on the controller against a stand-in ``gpunas.platform`` role that either accepts
everything or fails with the expected message. The ``ppa`` case of nvidia_driver expects the text
``nvidia_driver_method``, which the file's own "the role accepted ..." message also holds: a check
that only looks for the expected text in the last failure would pass for a role that accepted it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

FILES = {
    "nvidia_driver": ("molecule/_shared/tasks/nvidia_driver_bad_input.yml", "bad",
                      {"vars": {"nvidia_driver_method": "ppa"}, "expect": "nvidia_driver_method"}),
    "nvidia_container_toolkit": ("molecule/nvidia_container_toolkit/tasks/bad_input.yml", "bad",
                                 {"vars": {"nvidia_container_toolkit_version": "x"},
                                  "expect": "nvidia_container_toolkit_version"}),
    "zfs": ("molecule/zfs/tasks/expect_failure.yml", "__case",
            {"name": "bad", "pools": [], "expect": ["zfs_pools"]}),
    "mdraid": ("molecule/mdraid/tasks/expect_failure.yml", "__case",
               {"name": "bad", "arrays": [], "expect": ["mdraid_arrays"]}),
}


def run_checks(tmp_path: Path, role: str, role_tasks: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    path, loop_var, case = FILES[role]
    tasks = tmp_path / "collections" / "ansible_collections" / "gpunas" / "platform" / "roles" / role / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(yaml.safe_dump(role_tasks))
    play = {
        "name": "Refusal check against a stand-in role",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [{
            "name": "Run the refusal check",
            "ansible.builtin.include_tasks": str(ROOT / path),
            "loop": [case],
            "loop_control": {"loop_var": loop_var},
        }],
    }
    (tmp_path / "play.yml").write_text(yaml.safe_dump([play], sort_keys=False))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"),
        "ANSIBLE_HOME": str(tmp_path / "home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
    }
    return subprocess.run(["ansible-playbook", "-i", "localhost,", "play.yml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)


def expected_text(role: str) -> str:
    expect = FILES[role][2]["expect"]
    return " ".join(expect) if isinstance(expect, list) else str(expect)


@pytest.mark.parametrize("role", FILES)
def test_a_role_that_accepts_the_bad_input_fails_the_check(tmp_path: Path, role: str) -> None:
    run = run_checks(tmp_path, role, [{"name": "Accept anything", "ansible.builtin.debug": {"msg": "accepted"}}])
    assert run.returncode == 2, run.stdout[-3000:]


@pytest.mark.parametrize("role", FILES)
def test_a_role_that_refuses_with_the_expected_message_passes_the_check(tmp_path: Path, role: str) -> None:
    refuse = {"name": "Refuse", "ansible.builtin.fail": {"msg": f"Refused: {expected_text(role)} is wrong"}}
    run = run_checks(tmp_path, role, [refuse])
    assert run.returncode == 0, run.stdout[-3000:]
