# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Count the module runs each play makes on each host, for the scenarios and benchmarks.

Under TCG every module run on a VM costs seconds, so the number of them is what a role's
re-run costs. A task counts once per host it ran on, a loop once per item that ran; skipped
tasks and items, actions that run on the controller alone (debug, set_fact, assert, includes,
meta, ...), plays on localhost (Molecule's create and destroy) and tasks delegated to the
controller are not counted. An action plugin that runs more than one module for a task
(template, copy: stat, then copy) counts once: the figure is module *tasks*, a lower bound of
round trips.

Enable with ANSIBLE_CALLBACK_PLUGINS=tools/callback_plugins ANSIBLE_CALLBACKS_ENABLED=module_calls.
At the end of each playbook it prints one line per host and, where GPUNAS_MODULE_CALLS_LOG names a
file, appends one JSON line: scenario (MOLECULE_SCENARIO_NAME), playbook, check mode, per-host
counts and the most expensive tasks.
"""

from __future__ import annotations

import json
import os
from collections import Counter

from ansible import constants as C
from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: module_calls
type: aggregate
short_description: count module runs per host
description:
  - Counts the module runs each playbook makes on each host and prints them at the end.
requirements:
  - enable in the callbacks_enabled setting
"""

CONTROLLER_ONLY = frozenset(
    (
        *C._ACTION_DEBUG,
        *C._ACTION_SET_FACT,
        *C._ACTION_ALL_INCLUDE_IMPORT_TASKS,
        *C._ACTION_ALL_PROPER_INCLUDE_IMPORT_ROLES,
        *C._ACTION_INCLUDE_VARS,
        *C._ACTION_META,
        *C._ACTION_INVENTORY_TASKS,
        'assert',
        'ansible.builtin.assert',
        'fail',
        'ansible.builtin.fail',
        'pause',
        'ansible.builtin.pause',
        'set_stats',
        'ansible.builtin.set_stats',
        'validate_argument_spec',
        'ansible.builtin.validate_argument_spec',
    )
)
LOCAL_HOSTS = frozenset(('localhost', '127.0.0.1', '::1'))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'module_calls'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.playbook = ''
        self.calls: Counter[str] = Counter()
        self.tasks: Counter[str] = Counter()

    def v2_playbook_on_start(self, playbook) -> None:
        self.playbook = os.path.basename(playbook._file_name)

    def _ran_on_host(self, result) -> bool:
        task = result._task
        if task.action in CONTROLLER_ONLY or result._host.get_name() in LOCAL_HOSTS:
            return False
        delegate = task.delegate_to
        return not (delegate and str(delegate) in LOCAL_HOSTS)

    def _count(self, result) -> None:
        if not self._ran_on_host(result):
            return
        host = result._host.get_name()
        self.calls[host] += 1
        self.tasks[f'{host}: {result._task.get_name()}'] += 1

    def _count_task(self, result) -> None:
        # A loop's final result carries the items, which were counted one by one already.
        if 'results' not in result._result:
            self._count(result)

    def v2_runner_on_ok(self, result) -> None:
        self._count_task(result)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._count_task(result)

    def v2_runner_on_unreachable(self, result) -> None:
        self._count_task(result)

    def v2_runner_item_on_ok(self, result) -> None:
        self._count(result)

    def v2_runner_item_on_failed(self, result) -> None:
        self._count(result)

    def v2_playbook_on_stats(self, stats) -> None:
        check = bool(context.CLIARGS.get('check'))
        mode = ', check' if check else ''
        for host in sorted(self.calls):
            self._display.display(f'module calls: {host} {self.calls[host]} ({self.playbook}{mode})')
        log = os.environ.get('GPUNAS_MODULE_CALLS_LOG')
        if not log:
            return
        record = {
            'scenario': os.environ.get('MOLECULE_SCENARIO_NAME', ''),
            'playbook': self.playbook,
            'check': check,
            'calls': dict(sorted(self.calls.items())),
            'top_tasks': self.tasks.most_common(10),
        }
        with open(log, 'a', encoding='utf-8') as out:
            out.write(json.dumps(record) + '\n')
