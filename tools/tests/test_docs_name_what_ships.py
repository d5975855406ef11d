"""The documents name only content that ships: every ``gpunas.platform.<name>`` and ``roles/<name>``
they mention is a module, filter, role or playbook of this repository. A document that promises a role
before it lands (``roles/scheduler_server`` did) fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [
        ROOT / "README.md",
        ROOT / "galaxy.yml",
        ROOT / "scheduler" / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "scheduler" / "docs").glob("*.md"),
        *(ROOT / "roles").glob("*/README.md"),
    ]
)
FQCN = re.compile(r"\bgpunas\.platform\.([a-z0-9_]+)")
ROLE_PATH = re.compile(r"\broles/([a-z0-9_]+)")


def shipped() -> set[str]:
    modules = {p.stem for p in (ROOT / "plugins" / "modules").glob("*.py")}
    filters = {p.stem for p in (ROOT / "plugins" / "filter").glob("*.yml")}
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()}
    playbooks = {p.stem for p in (ROOT / "playbooks").glob("*.yml")}
    return modules | filters | roles | playbooks


def named(text: str) -> set[str]:
    return set(FQCN.findall(text)) | set(ROLE_PATH.findall(text))


def test_the_patterns_find_what_documents_write() -> None:
    assert named("run `gpunas.platform.zfs`, see roles/mdraid/README.md") == {"zfs", "mdraid"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_name_in_a_document_ships(document: Path) -> None:
    missing = named(document.read_text(encoding="utf-8")) - shipped()
    assert not missing, f"{document.relative_to(ROOT)} names content that does not ship: {sorted(missing)}"
