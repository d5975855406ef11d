"""ansible-lint rule ``gpunas-bare-bool``: a role's boolean input is read through ``| bool``.

A value from ``-e name=false``, or from an INI inventory (``name=false`` on a host line or in a
``[group:vars]`` section), reaches the play as the string ``"false"``. Role argument validation
accepts that string as a boolean but does not convert the variable, so a bare ``when: name``
reads a non-empty string: ansible-core 2.17 takes it as true (``-e nvidia_driver_reboot=false``
rebooted), 2.19 refuses it as a conditional of type ``str``. Only the ``bool`` filter gives the
value the meaning the operator wrote.

The variables checked are those declared ``type: bool`` in ``meta/argument_specs.yml`` of the
roles beside the linted file: they are exactly the inputs an operator sets from outside, with
names unique to their role. Registered results, facts and internal ``__role_*`` values are not
strings the operator typed, and asking ``| bool`` of every name would bury the real cases. Nested
options are read as ``item.field`` and are out of this rule's reach.

Every Jinja expression of a task is checked (``when``, ``changed_when``, ``failed_when``,
``until``, ``assert``'s ``that``, and templated strings in arguments and ``vars``), and every
``.j2`` template. A use passes when the variable itself, maybe through other filters such as
``default``, is piped into ``bool``: ``(name | default(true)) | bool`` passes, ``(not name) | bool``
does not, because ``not "false"`` is already false.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from ansiblelint.rules import AnsibleLintRule
from jinja2 import Environment, TemplateSyntaxError, nodes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ansiblelint.errors import MatchError
    from ansiblelint.file_utils import Lintable
    from ansiblelint.utils import Task

CONDITIONALS = ("when", "changed_when", "failed_when", "until")
ASSERT_ACTIONS = frozenset({"assert", "ansible.builtin.assert", "ansible.legacy.assert"})
JINJA = Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])


@cache
def declared_bools(roles: Path) -> frozenset[str]:
    """Names declared ``type: bool`` in any entry point of the argument specs under ``roles``."""
    names: set[str] = set()
    for spec_file in sorted(roles.glob("*/meta/argument_specs.yml")):
        specs = (yaml.safe_load(spec_file.read_text()) or {}).get("argument_specs") or {}
        for entry in specs.values():
            names.update(k for k, v in (entry.get("options") or {}).items() if v.get("type") == "bool")
    return frozenset(names)


def bools_for(file: Lintable) -> frozenset[str]:
    """The booleans of the roles of the project that holds ``file`` (its nearest ``roles/``)."""
    for folder in Path(file.path).resolve().parents:
        if (folder / "roles").is_dir():
            return declared_bools(folder / "roles")
    return frozenset()


def bare_uses(node: nodes.Node, names: frozenset[str], guarded: bool = False) -> Iterator[nodes.Name]:
    """Loads of ``names`` that do not flow, through filters only, into a ``bool`` filter."""
    if isinstance(node, nodes.Name):
        if node.ctx == "load" and node.name in names and not guarded:
            yield node
        return
    for child in node.iter_child_nodes():
        through = isinstance(node, nodes.Filter) and child is node.node
        yield from bare_uses(child, names, through and (guarded or node.name == "bool"))


def parse(text: str, expression: bool) -> nodes.Template | None:
    """A conditional is a bare expression (or, old style, a template); other strings are templates."""
    sources = [f"{{{{ {text} }}}}", text] if expression else [text]
    for source in sources:
        try:
            return JINJA.parse(source)
        except TemplateSyntaxError:
            continue
    return None


def templated(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(path, string) for every string holding Jinja inside a task value; bookkeeping keys skipped."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not str(key).startswith("__"):
                yield from templated(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from templated(item, f"{where}[{i}]")
    elif isinstance(value, str) and ("{{" in value or "{%" in value):
        yield where, value


def expressions(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(path, expression) for a conditional given as one string or a list of them."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield f"{where}[{i}]", item
    elif isinstance(value, str):
        yield where, value


class BareBoolRule(AnsibleLintRule):
    """A role's boolean input must be read through ``| bool``."""

    id = "gpunas-bare-bool"
    description = (
        "A variable declared type: bool in a role's argument specs is a string when it comes from -e or an "
        "INI inventory; read it through '| bool' so that 'false' means false."
    )
    severity = "VERY_HIGH"
    tags = ["gpunas", "idiom"]
    version_changed = "26.10.1"

    def matchtask(self, task: Task, file: Lintable | None = None) -> list[MatchError]:
        names = bools_for(file) if file is not None else frozenset()
        if not names:
            return []
        raw = task.raw_task
        found: list[tuple[str, str, bool]] = []
        for key in CONDITIONALS:
            found.extend((where, text, True) for where, text in expressions(raw.get(key), key))
        action = task["action"]
        if action.get("__ansible_module__") in ASSERT_ACTIONS:
            found.extend((where, text, True) for where, text in expressions(action.get("that"), "that"))
        rest = {
            k: ({a: b for a, b in v.items() if a != "that"} if k in ASSERT_ACTIONS and isinstance(v, dict) else v)
            for k, v in raw.items()
            if k not in CONDITIONALS
        }
        found.extend((where, text, False) for where, text in templated(rest, ""))
        return [
            self.create_matcherror(
                message=f"{where}: {use.name} is used without '| bool'", filename=file, data=task.raw_task
            )
            for where, text, expression in found
            if (tree := parse(text, expression)) is not None
            for use in bare_uses(tree, names)
        ]

    def matchlines(self, file: Lintable) -> list[MatchError]:
        if file.kind != "jinja2" or not (names := bools_for(file)):
            return []
        tree = parse(file.content, expression=False)
        if tree is None:
            return []
        return [
            self.create_matcherror(
                message=f"{use.name} is used without '| bool'", lineno=use.lineno, filename=file
            )
            for use in bare_uses(tree, names)
        ]
