"""ansible-lint rule ``gpunas-assert-that``: every item of ``assert``'s ``that`` is a string.

A list item such as ``- out.stdout == 'x86_64: installed'`` holds ``: `` outside quotes that YAML
sees, so YAML reads the item as a mapping. ansible-core 2.19 then refuses the task, but only when a
run reaches it ("Conditional expressions must be strings"). ansible-lint's schema already refuses a
mapping in ``when``, ``changed_when``, ``failed_when`` and ``until``; ``that`` is a module argument,
which neither the schema nor ``--syntax-check`` looks into. This rule closes that gap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ansiblelint.rules import AnsibleLintRule

if TYPE_CHECKING:
    from ansiblelint.errors import MatchError
    from ansiblelint.file_utils import Lintable
    from ansiblelint.utils import Task

ASSERT_ACTIONS = frozenset({"assert", "ansible.builtin.assert", "ansible.legacy.assert"})


def describe(item: Any) -> str:
    """The item as its author wrote it, without the bookkeeping keys ansible-lint adds."""
    if isinstance(item, dict):
        shown = ", ".join(f"{k}: {v}" for k, v in item.items() if not str(k).startswith("__"))
        return f"a mapping ({shown}); quote the whole expression"
    return f"a {type(item).__name__} ({item!r})"


class AssertThatStringRule(AnsibleLintRule):
    """Each condition in assert's ``that`` must be a string."""

    id = "gpunas-assert-that"
    description = (
        "Each item of ``assert``'s ``that`` must be a string or a boolean. YAML reads an item holding an "
        "unquoted ': ' as a mapping, which ansible-core refuses only when the task runs."
    )
    severity = "VERY_HIGH"
    tags = ["gpunas", "syntax"]
    version_changed = "26.10.1"

    def matchtask(self, task: Task, file: Lintable | None = None) -> list[MatchError]:
        action = task["action"]
        if action.get("__ansible_module__") not in ASSERT_ACTIONS or "that" not in action:
            return []
        that = action["that"]
        named = [(f"that[{i}]", item) for i, item in enumerate(that)] if isinstance(that, list) else [("that", that)]
        return [
            self.create_matcherror(message=f"{name} is {describe(item)}", filename=file, data=task.raw_task)
            for name, item in named
            if not isinstance(item, (str, bool))
        ]
