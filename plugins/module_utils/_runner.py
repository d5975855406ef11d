# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One small command runner per CLI: resolved binary, list argv, ``LC_ALL=C``, no shell, bounded wait.

Usage::

    lspci = CommandRunner(module, 'lspci', missing_hint='install the pciutils package', timeout=30)
    rc, out, err = lspci.run(['-D', '-mm', '-nn'])

``commands`` lists every argv that ran, so a module can return what it did. With ``timeout``
(seconds) a command still running after that long is killed (SIGKILL): a return code outside
``ok_rcs`` and a timeout both fail the module, and a caller that passes ``ok_rcs=None`` to handle
failures itself gets ``CommandTimeout`` instead. ``AnsibleModule.run_command`` has no timeout of
its own; the kill comes from a timer armed through its ``before_communicate_callback``, after which
run_command sees the process gone and returns.
"""

from __future__ import annotations

import threading

C_LOCALE = {'LC_ALL': 'C', 'LANG': 'C'}


class CommandTimeout(Exception):
    """A command did not finish within the runner's timeout and was killed."""


class CommandRunner:
    """Run one binary found with ``get_bin_path``; fail the module with a clear message otherwise."""

    def __init__(self, module, binary, missing_hint=None, timeout=None):
        self.module = module
        path = module.get_bin_path(binary)
        if not path:
            msg = f'{binary} was not found on the target'
            module.fail_json(msg=f'{msg}: {missing_hint}' if missing_hint else msg)
        self.path = path
        self.timeout = timeout
        self.commands = []

    def run(self, args, ok_rcs=(0,)):
        """Run ``[binary] + args``; a return code outside ``ok_rcs`` or a timeout fails the module."""
        argv = [self.path] + [str(arg) for arg in args]
        self.commands.append(argv)
        timers = []
        killed = threading.Event()

        def kill(process):
            if process.poll() is None:
                killed.set()
                process.kill()

        def arm(process):
            if self.timeout is not None:
                timers.append(threading.Timer(self.timeout, kill, (process,)))
                timers[-1].daemon = True
                timers[-1].start()

        try:
            rc, out, err = self.module.run_command(argv, environ_update=C_LOCALE, before_communicate_callback=arm)
        finally:
            for timer in timers:
                timer.cancel()
        if killed.is_set():
            msg = f"{' '.join(argv)} did not finish within {self.timeout} s and was killed"
            if ok_rcs is None:
                raise CommandTimeout(msg)
            self.module.fail_json(msg=msg, cmd=argv, stdout=out, stderr=err)
        if ok_rcs is not None and rc not in ok_rcs:
            self.module.fail_json(
                msg=f"{' '.join(argv)} failed with rc {rc}: {(err or out).strip()}",
                rc=rc, stdout=out, stderr=err, cmd=argv)
        return rc, out, err
