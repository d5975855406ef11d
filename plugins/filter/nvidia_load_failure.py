# Copyright (c) gpunas.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nvidia_load_failure filter: the role's wrapper of ``_nvidia_load.classify_load_failure``."""

from __future__ import annotations

from ansible_collections.gpunas.platform.plugins.module_utils._nvidia_load import classify_load_failure


def nvidia_load_failure(modprobe_stderr, kernel_log='', gpu_present=True):
    return classify_load_failure(str(modprobe_stderr or ''), str(kernel_log or ''), bool(gpu_present))


class FilterModule:
    def filters(self):
        return {'nvidia_load_failure': nvidia_load_failure}
