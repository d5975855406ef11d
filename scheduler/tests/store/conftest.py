import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.env import pg_cluster  # noqa: F401 - fixture re-exported for this directory
