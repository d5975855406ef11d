"""Offline stand-in for the get-pip.py that ansible-test downloads to bootstrap its sanity venvs.

ansible-test fetches get-pip.py from ci-files.testing.ansible.com, which our CI cannot reach. It
runs the script as ``python get_pip.py [--disable-pip-version-check] pip==X [--no-setuptools]
[--no-wheel]`` inside a venv made without pip; this does the same with the pip that Python's own
ensurepip bundles, then pins pip to the version ansible-test asked for (from PyPI, reachable).
`make sanity` copies it to ~/.ansible/test/cache/get_pip_<version>.py.
"""

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)
