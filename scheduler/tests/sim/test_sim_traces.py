"""Trace readers and the ``simulate`` command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpunas_scheduler.domain.model import JobClass
from gpunas_scheduler.sim import TraceError, main, read_openb, read_simple_csv, shrink_cluster, uniform_cluster
from gpunas_scheduler.sim.trace import OPENB_DIR, default_traces_dir, tenant_of

GOOD = """submit_time,duration,gpus,tenant,class,gpu_share_milli
0,100,1,suwon,training,
5,50,1,yongin,2,250
3,20,2,seongnam,URGENT_INFERENCE,
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_simple_csv(tmp_path):
    trace = read_simple_csv(write(tmp_path, GOOD), uniform_cluster(2, 4))
    assert [t.submit for t in trace.tasks] == [0, 3, 5]
    assert [t.job_class for t in trace.tasks] == [JobClass.TRAINING, JobClass.URGENT_INFERENCE, JobClass.INFERENCE]
    assert trace.tasks[2].request.gpu_share_milli == 250
    assert trace.tasks[2].request.gpu_units == 0.25
    assert len(trace.nodes) == 2 and len(trace.nodes[0].gpus) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("submit_time,duration,gpus,tenant,class\nx,1,1,a,1\n", "trace.csv:2: field 'submit_time' is not a number"),
        ("submit_time,duration,gpus,tenant\n0,1,1,a\n", "field 'class' must be 1-4"),
        ("submit_time,duration,gpus,tenant,class\n0,1,1,,1\n", "trace.csv:2: field 'tenant' is missing"),
        ("submit_time,duration,gpus,tenant,class\n0,0,1,a,1\n", "'duration' and 'gpus' must be positive"),
        ("submit_time,duration,gpus,tenant,class,gpu_share_milli\n0,1,2,a,1,500\n", "'gpu_share_milli' must be 1-999"),
        ("submit_time,gpus,tenant,class\n0,1,a,1\n", "field 'duration' is missing"),
    ],
)
def test_simple_csv_errors_name_the_field(tmp_path, text, message):
    with pytest.raises(TraceError, match=message):
        read_simple_csv(write(tmp_path, text), uniform_cluster(1, 1))


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(TraceError, match="no such trace file"):
        read_simple_csv(tmp_path / "nope.csv", [])


def test_tenant_hash_is_stable():
    assert tenant_of("openb-pod-0000") == tenant_of("openb-pod-0000")
    assert {tenant_of(f"openb-pod-{i:04d}") for i in range(30)} == {"suwon", "seongnam", "yongin"}


def test_shrink_cluster_keeps_an_even_spread():
    nodes = uniform_cluster(10, 1)
    from gpunas_scheduler.sim import Trace

    assert [n.name for n in shrink_cluster(Trace("t", nodes, []), 0.3).nodes] == ["node-0003", "node-0006", "node-0009"]
    with pytest.raises(TraceError, match="cluster fraction"):
        shrink_cluster(Trace("t", nodes, []), 0)


OPENB = default_traces_dir() / OPENB_DIR


@pytest.mark.skipif(not OPENB.is_dir(), reason=f"Alibaba openb trace not present at {OPENB}")
def test_openb_default_trace():
    trace = read_openb()
    assert len(trace.nodes) == 1213
    assert sum(len(n.gpus) for n in trace.nodes) == 6212
    assert trace.skipped == {"cpu_only": 1088, "no_run_time": 1}
    assert len(trace.tasks) == 8152 - 1088 - 1
    shares = [t for t in trace.tasks if t.request.gpu_share_milli is not None]
    assert shares and all(t.request.gpus == 1 for t in shares)
    assert {t.job_class for t in trace.tasks} == set(JobClass)


def test_openb_variant_is_checked():
    with pytest.raises(TraceError, match="variant must be one of"):
        read_openb(Path("/nonexistent"), "multigpu30")


def test_cli_table_and_json(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert main(["--csv", str(path), "--nodes", "1x2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["metric", "ours", "fifo", "best-fit"]
    assert "tasks finished / unfinished" in out
    assert main(["--csv", str(path), "--nodes", "1x2", "--policy", "fifo", "--json"]) == 0
    line = capsys.readouterr().out.strip()
    assert '"policy": "fifo"' in line and '"finished": 3' in line


def test_cli_reports_bad_trace(tmp_path, capsys):
    path = write(tmp_path, "submit_time,duration,gpus,tenant,class\n0,1,1,a,9\n")
    assert main(["--csv", str(path)]) == 2
    assert "field 'class'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--csv", str(path), "--nodes", "eight"])
