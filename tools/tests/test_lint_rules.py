"""Our ansible-lint rules, run through the repository's own .ansible-lint on files written here.

Going through the configuration, not the rule class alone, also checks the wiring: under a profile,
ansible-lint runs only the rules the profile or ``enable_list`` names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[2] / ".ansible-lint"

ROLE_TASKS = """\
---
- name: Quoted whole, a boolean, and a folded block are all strings or booleans
  ansible.builtin.assert:
    that:
      - "out.stdout == 'x86_64: installed'"
      - true
      - >-
        out.stdout_lines | select('search', 'x86_64: installed') | list | length == 1
- name: The mistake that reached a VM run
  ansible.builtin.assert:
    that:
      - out.rc == 0
      - out.stdout == 'x86_64: installed'
- name: A lone mapping under the short action name
  assert:  # noqa: fqcn[action-core]
    that:
      kernel: 6.1
"""


def lint(project: Path) -> list[dict[str, object]]:
    run = subprocess.run(
        ["ansible-lint", "--strict", "-c", str(CONFIG), "-f", "json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode in (0, 2), run.stderr
    return json.loads(run.stdout or "[]")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    tasks = tmp_path / "roles" / "r" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(ROLE_TASKS)
    return tmp_path


def test_assert_that_mappings_are_refused_with_the_expression_as_written(project: Path) -> None:
    found = [
        (m["check_name"], m["location"]["positions"]["begin"]["line"], m["description"])  # type: ignore[index]
        for m in lint(project)
    ]
    assert found == [
        (
            "gpunas-assert-that",
            9,
            "that[1] is a mapping (out.stdout == 'x86_64: installed'); quote the whole expression",
        ),
        ("gpunas-assert-that", 14, "that is a mapping (kernel: 6.1); quote the whole expression"),
    ]
