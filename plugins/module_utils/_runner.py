# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One small command runner per CLI: resolved binary, list argv, ``LC_ALL=C``, no shell.

Usage::

    lspci = CommandRunner(module, 'lspci', missing_hint='install the pciutils package')
    rc, out, err = lspci.run(['-D', '-mm', '-nn'])

``commands`` lists every argv that ran, so a module can return what it did.
"""

from __future__ import annotations

C_LOCALE = {'LC_ALL': 'C', 'LANG': 'C'}


class CommandRunner:
    """Run one binary found with ``get_bin_path``; fail the module with a clear message otherwise."""

    def __init__(self, module, binary, missing_hint=None):
        self.module = module
        path = module.get_bin_path(binary)
        if not path:
            msg = f'{binary} was not found on the target'
            module.fail_json(msg=f'{msg}: {missing_hint}' if missing_hint else msg)
        self.path = path
        self.commands = []

    def run(self, args, ok_rcs=(0,)):
        """Run ``[binary] + args``; a return code outside ``ok_rcs`` fails the module."""
        argv = [self.path] + [str(arg) for arg in args]
        self.commands.append(argv)
        rc, out, err = self.module.run_command(argv, environ_update=C_LOCALE)
        if ok_rcs is not None and rc not in ok_rcs:
            self.module.fail_json(
                msg=f"{' '.join(argv)} failed with rc {rc}: {(err or out).strip()}",
                rc=rc, stdout=out, stderr=err, cmd=argv)
        return rc, out, err
