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


BOOL_SPECS = """\
---
argument_specs:
  main:
    short_description: A role with booleans
    options:
      r_reboot:
        description: A boolean.
        type: bool
        default: true
      r_name:
        description: A string.
        type: str
        default: x
"""

BOOL_TASKS = """\
---
- name: Each use goes through the bool filter, also after default
  ansible.builtin.debug:
    msg: "{{ 'yes' if r_reboot | bool else 'no' }}"
  when: r_name == 'x' and (r_reboot | default(true)) | bool
- name: A bare boolean in when
  ansible.builtin.debug:
    msg: reboot
  when: r_status == 'reboot_required' and r_reboot
- name: A negated boolean in a template, and a bare one in failed_when
  ansible.builtin.set_fact:
    r_left: "{{ not r_reboot }}"
  failed_when:
    - r_reboot
- name: Negation is not the bool filter
  ansible.builtin.assert:
    that:
      - (not r_reboot) | bool
- name: A bare boolean on a block
  when: r_reboot
  block:
    - name: Inside the block
      ansible.builtin.debug:
        msg: inside
"""

BOOL_TEMPLATE = """\
{% if r_reboot | bool %}fine{% endif %}
{% if r_reboot %}bare{% endif %}
"""


@pytest.fixture
def bool_project(tmp_path: Path) -> Path:
    role = tmp_path / "roles" / "r"
    for sub in ("tasks", "meta", "templates"):
        (role / sub).mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text(BOOL_SPECS)
    (role / "meta" / "main.yml").write_text(
        "---\ngalaxy_info:\n  author: t\n  description: t\n  license: MIT\n  min_ansible_version: '2.17'\n"
        "  platforms:\n    - name: Debian\n      versions: [bookworm]\n"
    )
    (role / "tasks" / "main.yml").write_text(BOOL_TASKS)
    (role / "templates" / "t.conf.j2").write_text(BOOL_TEMPLATE)
    return tmp_path


def test_declared_booleans_used_without_the_bool_filter_are_refused(bool_project: Path) -> None:
    found = sorted(
        (
            m["location"]["path"],  # type: ignore[index]
            m["location"].get("positions", m["location"]).get("begin", {}).get("line")  # type: ignore[attr-defined]
            or m["location"]["lines"]["begin"],  # type: ignore[index]
            m["description"],
        )
        for m in lint(bool_project)
        if m["check_name"] == "gpunas-bare-bool"
    )
    tasks, template = "roles/r/tasks/main.yml", "roles/r/templates/t.conf.j2"
    assert found == [
        (tasks, 6, "when: r_reboot is used without '| bool'"),
        (tasks, 10, "ansible.builtin.set_fact.r_left: r_reboot is used without '| bool'"),
        (tasks, 10, "failed_when[0]: r_reboot is used without '| bool'"),
        (tasks, 15, "that[0]: r_reboot is used without '| bool'"),
        (tasks, 19, "when: r_reboot is used without '| bool'"),
        (template, 2, "r_reboot is used without '| bool'"),
    ]
