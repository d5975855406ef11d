# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why ``modprobe nvidia`` failed, from its own error and the kernel log: reboot, fail or no GPU.

A failed load used to mean "reboot required" whenever an NVIDIA device was on the bus, so a GPU
the driver does not support, a missing firmware file or a module the kernel refuses to trust
made the role reboot the host on every run. Only two failures are cured by a reboot: nouveau
holding the device (the blacklist takes effect at boot) and a cause the log does not name, which
the role reboots for once and then reports (see the role's ``load.yml``). Everything else is
reported with the kernel's own words.

The patterns are the messages of kmod's ``modprobe`` (``could not insert 'nvidia': <errno
text>``; older module-init-tools: ``FATAL: Error inserting ...``) and of the NVIDIA kernel
module (``NVRM:`` lines), as recorded in the fixtures under ``tests/unit/fixtures/gpu/modprobe/``.
Pure: the role passes the texts in.
"""

from __future__ import annotations

import re

NO_GPU = 'no_gpu'
REBOOT = 'reboot_required'
FAILED = 'failed'

# Not "PKCS#7 signature not signed with a trusted key": the kernel prints that for an unsigned
# module it still loads, where signatures are not enforced.
_SIGNATURE = re.compile(
    r'Key was rejected by service|Required key not available|Loading of module with unavailable key is rejected'
)
_NOT_BUILT = re.compile(r'not found in directory|Module \S+ not found')
_WRONG_KERNEL = re.compile(r'Exec format error|Invalid module format|Unknown symbol in module')
_BAD_PARAMETER = re.compile(r'Invalid argument')
_UNSUPPORTED = re.compile(
    r'is not supported by|not supported by open|does not include the required GPU|'
    r'Open nvidia\.ko is only ready for use on Data Center GPUs'
)
_FIRMWARE = re.compile(
    r'RmFetchGspRmImages: No firmware image found|Direct firmware load for nvidia/\S+ failed|'
    r'Cannot initialize GSP firmware'
)
_HELD = re.compile(r'probe routine was not called|obtained ownership of|already bound to nouveau')
_DRIVER_LINE = re.compile(r'NVRM|nvidia|nouveau|module verification|key', re.IGNORECASE)


def driver_lines(kernel_log, limit=8):
    """The kernel log lines about the driver, the newest ``limit`` of them (``None``: all), timestamps
    dropped."""
    lines = [re.sub(r'^\[\s*\d+\.\d+\]\s*', '', line).strip() for line in kernel_log.splitlines()]
    found = [line for line in lines if line and _DRIVER_LINE.search(line)]
    return found if limit is None else found[-limit:]


def classify_load_failure(modprobe_stderr, kernel_log, gpu_present):
    """``{'status': no_gpu | reboot_required | failed, 'reason': str}`` for a failed ``modprobe``.

    ``modprobe_stderr`` is modprobe's error, ``kernel_log`` the kernel log of this boot (``dmesg``;
    empty where it cannot be read), ``gpu_present`` whether ``lspci`` sees an NVIDIA device. The
    reason quotes modprobe and the kernel log lines that decided, then the newest driver lines.
    """
    error = modprobe_stderr.strip() or 'modprobe printed nothing'
    both = f'{modprobe_stderr}\n{kernel_log}'

    lines = driver_lines(kernel_log, limit=None)

    def outcome(status, reason, pattern=None):
        decisive = [line for line in lines if pattern.search(line)] if pattern else []
        room = max(0, 8 - len(decisive))
        shown = decisive + ([line for line in lines if line not in decisive][-room:] if room else [])
        context = f' Kernel log: {" / ".join(shown)}' if shown and status != NO_GPU else ''
        return {'status': status, 'reason': reason + context}

    if _SIGNATURE.search(both):
        return outcome(FAILED, f'the kernel refused the module\'s signature ({error}): Secure Boot is on and the '
                               'signing key is not enrolled; enrol it (mokutil --import, then confirm at the next '
                               'boot) or give nvidia_driver_signing_key and nvidia_driver_signing_cert of an '
                               'enrolled key.', _SIGNATURE)
    if _NOT_BUILT.search(modprobe_stderr):
        return outcome(FAILED, f'no module is installed for the running kernel ({error}).')
    if _WRONG_KERNEL.search(both):
        return outcome(FAILED, f'the module does not fit the running kernel ({error}); rebuild it with DKMS for '
                               'this kernel.', _WRONG_KERNEL)
    if not gpu_present:
        return outcome(NO_GPU, error)
    if _UNSUPPORTED.search(kernel_log):
        return outcome(FAILED, f'this driver does not support the GPU ({error}); choose a driver branch that '
                               'does (nvidia_driver_version).', _UNSUPPORTED)
    if _FIRMWARE.search(kernel_log):
        return outcome(FAILED, f'the GPU firmware the driver needs is missing ({error}); install the firmware '
                               'package of the same driver version.', _FIRMWARE)
    if _BAD_PARAMETER.search(modprobe_stderr):
        return outcome(FAILED, f'the kernel refused the module\'s parameters ({error}); check '
                               'nvidia_driver_module_params.')
    if _HELD.search(kernel_log):
        return outcome(REBOOT, f'another driver (nouveau) holds the GPU ({error}); the blacklist takes effect '
                               'at the next boot.', _HELD)
    return outcome(REBOOT, f'modprobe failed ({error}) for a reason the kernel log does not name; a reboot '
                           'may load it.')
