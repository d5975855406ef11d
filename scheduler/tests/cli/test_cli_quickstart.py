"""The README's quickstart runs as written, and the pieces it relies on: the shipped examples, one-line
errors, copyable ids, node registration and job commands whose own flags need no ``--``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpunas_scheduler.cli import app

SCHEDULER = Path(__file__).resolve().parents[2]
EXAMPLES = SCHEDULER / "examples"
runner = CliRunner()


def quickstart_block() -> str:
    readme = (SCHEDULER / "README.md").read_text()
    section = readme.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, re.S | re.M)
    assert len(blocks) == 1, "the quickstart is one sh block"
    return blocks[0]


def test_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    venv_cli = SCHEDULER / ".venv" / "bin" / "gpunas-scheduler"
    assert venv_cli.exists(), "the quickstart uses scheduler/.venv: run 'make scheduler-venv'"
    # A newcomer's shell at the repository root: no venv on PATH, a home and temporary folder of their own.
    (tmp_path / "scheduler").symlink_to(SCHEDULER)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        ["bash", "-eu", "-o", "pipefail", "-c", quickstart_block()],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        # The quickstart stops its server; whatever it left behind (a failed step) goes with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    job_id = re.search(r"job ([0-9a-f]{22})", out)
    assert job_id, out
    assert out.count(job_id[1]) >= 2, "the full id in the get and list output"
    assert re.search(r"node +│ gpu01", out), out
    assert re.search(r"command +│ python train.py --epochs 3", out), out
    assert "gpunas_jobs{" in out, out


def test_sample_configuration_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GPUNAS_SCHEDULER_DATABASE_URL", f"sqlite:///{tmp_path / 's.db'}")
    res = runner.invoke(app, ["check-config", "--config", str(EXAMPLES / "config.toml")])
    assert res.exit_code == 0, res.output


def test_migrate_names_a_missing_database_directory(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database_url = "sqlite:///{tmp_path}/nowhere/s.db"\n')
    res = runner.invoke(app, ["migrate", "--config", str(cfg)])
    assert res.exit_code == 2
    assert res.output.strip() == f"error: database directory {tmp_path}/nowhere does not exist"
