"""``gpunas-scheduler``: run the server, administer it locally, and use it over HTTP."""

from __future__ import annotations

import gc
import json
import os
import shlex
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from gpunas_scheduler.client import Client, ClientError

if TYPE_CHECKING:
    from rich.table import Table

    from gpunas_scheduler.config import Config

# The user commands talk HTTP only: what serves or stores (SQLAlchemy, FastAPI, pydantic) and the
# tables of rich are imported inside the commands that use them, so that one call stays quick. The
# command line is plain click: typer would run every parameter through pydantic (~120 ms of import).

F = TypeVar("F", bound=Callable[..., Any])


@click.group(
    help="GPU job scheduler of the gpunas platform.",
    no_args_is_help=True,
    context_settings={"show_default": True},
)
def app() -> None:
    pass


@app.group("admin", help="Local administration on the server host (talks to the database).", no_args_is_help=True)
def admin_app() -> None:
    pass


@app.group("jobs", help="Submit and follow jobs (over the HTTP API).", no_args_is_help=True)
def jobs_app() -> None:
    pass


@app.group("nodes", help="GPU nodes (over the HTTP API).", no_args_is_help=True)
def nodes_app() -> None:
    pass


@app.group("tenants", help="Tenants and quota usage (over the HTTP API).", no_args_is_help=True)
def tenants_app() -> None:
    pass


_PATH = click.Path(path_type=Path)
config_option = click.option(
    "--config", "-c", type=_PATH, help="TOML configuration (default /etc/gpunas-scheduler/config.toml)"
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print raw JSON instead of a table")


def http_options(f: F) -> F:
    """--url, --token and --ca-file of every command that talks to the server."""
    f = click.option("--ca-file", type=_PATH, envvar="GPUNAS_CA_FILE", show_envvar=True, help="CA bundle for HTTPS")(f)
    f = click.option(
        "--token", default="", envvar="GPUNAS_TOKEN", show_envvar=True, show_default=False, help="API token"
    )(f)
    return click.option(
        "--url", default="http://127.0.0.1:8080", envvar="GPUNAS_URL", show_envvar=True, help="Server base URL"
    )(f)


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(click.style("error:", fg="red") + f" {message}", err=True)
    raise click.exceptions.Exit(code)


def _table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table

    return Table(*columns, title=title)


def _show(table: Table) -> None:
    from rich.console import Console

    Console().print(table)


def _config(path: Path | None) -> Config:
    from gpunas_scheduler.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(str(exc), 2)


def _ts(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _check_database_folder(cfg: Config) -> None:
    """A SQLite file whose folder is missing is one line naming it, not SQLAlchemy's traceback."""
    from sqlalchemy.engine import make_url

    url = make_url(cfg.database_url)
    if url.get_backend_name() == "sqlite":
        folder = Path(url.database or "").parent
        if not folder.is_dir():
            _fail(f"database directory {folder} does not exist", 2)


def _engine(cfg: Config) -> Any:
    from gpunas_scheduler.store.sql import make_engine

    _check_database_folder(cfg)
    return make_engine(cfg.database_url)


# --------------------------------------------------------------------- server
@app.command("check-config")
@config_option
def check_config(config: Path | None) -> None:
    """Validate the configuration and exit (0 when valid)."""
    cfg = _config(config)
    table = _table("setting", "value", title="configuration is valid")
    for key, value in cfg.model_dump().items():
        shown = value
        if key == "database_url":
            from sqlalchemy.engine import make_url

            shown = make_url(value).render_as_string(hide_password=True)
        table.add_row(key, str(shown))
    _show(table)


@app.command("migrate")
@config_option
def migrate(config: Path | None) -> None:
    """Create or upgrade the database schema."""
    from gpunas_scheduler.store import migrate as mig

    cfg = _config(config)
    engine = _engine(cfg)
    before = mig.current(engine)
    mig.upgrade(engine)
    after = mig.current(engine)
    engine.dispose()
    click.echo(f"schema: {before or 'empty'} -> {after}" if before != after else f"schema already at {after}")


@app.command("serve")
@config_option
@click.option("--migrate", "migrate_first", is_flag=True, help="Upgrade the schema before serving")
def serve(config: Path | None, migrate_first: bool) -> None:
    """Run the API server and the scheduling loop."""
    import uvicorn

    from gpunas_scheduler.app import build, configure_logging
    from gpunas_scheduler.store import migrate as mig

    cfg = _config(config)
    configure_logging(cfg)
    engine = _engine(cfg)
    if migrate_first:
        mig.upgrade(engine)
    current, head = mig.current(engine), mig.head()
    engine.dispose()
    if current != head:
        _fail(f"database schema is at {current or 'empty'}, expected {head}: run 'gpunas-scheduler migrate'", 3)
    common: dict[str, Any] = {
        "host": cfg.listen_host,
        "port": cfg.listen_port,
        "ssl_certfile": None if cfg.tls_cert_file is None else str(cfg.tls_cert_file),
        "ssl_keyfile": None if cfg.tls_key_file is None else str(cfg.tls_key_file),
        "log_level": cfg.log_level,
        "access_log": cfg.log_level == "debug",
        "timeout_graceful_shutdown": 10,
    }
    app = build(cfg).app
    # Everything alive now (modules, models, routes: over 100,000 objects) lives as long as the
    # process; moved out of the collector's reach, a full collection no longer scans them and
    # costs a request tens of milliseconds less.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, **common)


@app.command(
    "simulate",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.pass_context
def simulate(ctx: click.Context) -> None:
    """Replay a job trace through the scheduling policies (see 'simulate --help')."""
    from gpunas_scheduler.sim.cli import main as sim_main

    raise click.exceptions.Exit(sim_main(list(ctx.args)))


@app.command("openapi")
def openapi() -> None:
    """Print the OpenAPI document of the API (the committed scheduler/openapi.json)."""
    from gpunas_scheduler.api.app import create_app
    from gpunas_scheduler.service.core import SchedulerService
    from gpunas_scheduler.service.metrics import Metrics
    from gpunas_scheduler.service.ports import system_clock
    from gpunas_scheduler.store.memory import MemoryStore

    api = create_app(SchedulerService(MemoryStore(), system_clock, Metrics()), ready=dict)
    sys.stdout.write(json.dumps(api.openapi(), indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------- admin
def _local_service(config: Path | None) -> Any:
    from gpunas_scheduler.app import build
    from gpunas_scheduler.store import migrate as mig

    cfg = _config(config)
    _check_database_folder(cfg)
    server = build(cfg, run_loop=False)
    if mig.current(server.store.engine) != mig.head():
        server.store.close()
        _fail("database schema is not current: run 'gpunas-scheduler migrate'", 3)
    return server


def _local_call(config: Path | None, fn: Any) -> Any:
    from gpunas_scheduler.service.errors import ServiceError

    server = _local_service(config)
    try:
        return fn(server.service)
    except ServiceError as exc:
        _fail(exc.message)
    finally:
        server.store.close()


@admin_app.command("tenant-set")
@click.argument("name")
@config_option
@click.option("--weight", type=float, default=1.0, help="Fair-share weight")
@click.option("--api-calls-per-day", type=click.IntRange(min=0))
@click.option("--gpu-hours-per-month", type=click.FloatRange(min=0))
@click.option("--upload-gib-per-month", type=click.FloatRange(min=0))
def tenant_set(
    name: str,
    config: Path | None,
    weight: float,
    api_calls_per_day: int | None,
    gpu_hours_per_month: float | None,
    upload_gib_per_month: float | None,
) -> None:
    """Create or update a tenant and its quotas (unset quota = unlimited)."""
    from gpunas_scheduler.service.records import TenantRecord

    rec = TenantRecord(
        name=name,
        fairshare_weight=weight,
        api_calls_per_day=api_calls_per_day,
        gpu_hours_per_month=gpu_hours_per_month,
        upload_bytes_per_month=None if upload_gib_per_month is None else int(upload_gib_per_month * 2**30),
    )
    saved = _local_call(config, lambda svc: svc.upsert_tenant(rec))
    click.echo(f"tenant {saved.name} saved")


@admin_app.command("user-add")
@click.argument("name")
@click.option("--role", required=True, help="tenant_member, tenant_admin, platform_admin or agent")
@click.option("--tenant", help="Tenant (tenant roles only)")
@config_option
def user_add(name: str, role: str, tenant: str | None, config: Path | None) -> None:
    """Create a user."""
    from gpunas_scheduler.service.records import Role

    try:
        r = Role(role)
    except ValueError:
        _fail(f"role: must be one of {', '.join(x.value for x in Role)}", 2)
    u = _local_call(config, lambda svc: svc.create_user(None, name, r, tenant))
    click.echo(f"user {u.name} ({u.role}{', tenant ' + u.tenant if u.tenant else ''}) created")


@admin_app.command("token-create")
@click.argument("user")
@config_option
@click.option("--ttl-days", type=click.FloatRange(min=0.001, max=365), default=30, help="Lifetime in days")
@click.option("--output", type=_PATH, help="Write the token to this file (mode 0600) instead of stdout")
def token_create(user: str, config: Path | None, ttl_days: float, output: Path | None) -> None:
    """Issue a token; it is shown once, only its hash is stored."""
    issued = _local_call(config, lambda svc: svc.issue_token(None, user, ttl_days * 86400))
    if output is not None:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(issued.token + "\n")
        click.echo(f"token {issued.record.id} for {user} written to {output}, expires {_ts(issued.record.expires_at)}")
    else:
        sys.stdout.write(issued.token + "\n")


@admin_app.command("token-revoke")
@click.argument("token_id")
@config_option
def token_revoke(token_id: str, config: Path | None) -> None:
    """Revoke a token by its id (the 16 hex digits after ``gpn_``)."""
    rec = _local_call(config, lambda svc: svc.revoke_token(None, token_id))
    click.echo(f"token {rec.id} of {rec.user} revoked")


@admin_app.command("token-list")
@config_option
def token_list(config: Path | None) -> None:
    """List tokens (ids and dates only)."""
    rows = _local_call(config, lambda svc: svc.store.list_tokens(None))
    table = _table("id", "user", "created", "expires", "revoked")
    for t in rows:
        table.add_row(t.id, t.user, _ts(t.created_at), _ts(t.expires_at), _ts(t.revoked_at))
    _show(table)


# ----------------------------------------------------------------- HTTP client
class _Api:
    """The REST client, its errors turned into one line on stderr and exit status 1."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def call(self, method: str, path: str, *, json: Any = None, params: list[tuple[str, Any]] | None = None) -> Any:
        try:
            return self.client.call(method, path, json_body=json, params=params)
        except ClientError as exc:
            _fail(str(exc))


def _client(url: str, token: str, ca: Path | None) -> _Api:
    if not token:
        _fail("no token: pass --token or set GPUNAS_TOKEN", 2)
    return _Api(Client(url, token, ca))


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _gpu_text(job: dict[str, Any]) -> str:
    r = job["spec"].get("resources", {})
    if r.get("mig_profile"):
        return f"MIG {r['mig_profile']}"
    if r.get("vgpu_profile"):
        return f"vGPU {r['vgpu_profile']}"
    if r.get("gpu_share_milli"):
        return f"{r['gpu_share_milli'] / 10:.1f}% GPU"
    return str(r.get("gpus", 1))


def _jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = _table("id", "tenant", "user", "class", "state", "gpus", "node", "submitted", "attempts")
    # Ids are what one copies from this table: never shortened or broken, whatever the width.
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max((len(j["id"]) for j in jobs), default=2)
    for j in jobs:
        table.add_row(
            j["id"],
            j["tenant"],
            j["user"],
            j["job_class"],
            j["state"],
            _gpu_text(j),
            j["node"] or "-",
            _ts(j["submitted_at"]),
            str(j["attempts"]),
        )
    return table


@app.command("whoami")
@http_options
def whoami(url: str, token: str, ca_file: Path | None) -> None:
    """Show who the token belongs to."""
    me = _client(url, token, ca_file).call("GET", "/api/v1/whoami")
    click.echo(f"{me['user']} ({me['role']}{', tenant ' + me['tenant'] if me['tenant'] else ''})")


@jobs_app.command("submit", context_settings={"allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1)
@click.option("--class", "job_class", default="training", help="urgent_inference, inference, fine_tuning, training")
@click.option("--gpus", type=click.IntRange(min=0), default=1)
@click.option("--gpu-memory-mib", type=int)
@click.option("--mig-profile")
@click.option("--vgpu-profile")
@click.option("--gpu-share-milli", type=int)
@click.option("--cpu-milli", type=int, default=1000)
@click.option("--memory-mib", type=int, default=1024)
@click.option("--max-runtime-s", type=int)
@click.option("--checkpoint-grace-s", type=int, default=60)
@click.option("--service", help="Replica group (anti-affinity)")
@click.option("--env", "-e", multiple=True, help="KEY=VALUE, repeatable")
@click.option("--tenant", help="Tenant (platform admins only)")
@click.option("--name")
@http_options
@json_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the job's id")
def jobs_submit(
    image: str,
    command: tuple[str, ...],
    job_class: str,
    gpus: int,
    gpu_memory_mib: int | None,
    mig_profile: str | None,
    vgpu_profile: str | None,
    gpu_share_milli: int | None,
    cpu_milli: int,
    memory_mib: int,
    max_runtime_s: int | None,
    checkpoint_grace_s: int,
    service: str | None,
    env: tuple[str, ...],
    tenant: str | None,
    name: str | None,
    url: str,
    token: str,
    ca_file: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Submit a job: options first, then the image, then the command as the container runs it.

    COMMAND: the command and its arguments, everything after IMAGE, flags included.
    """
    env_map: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--env {item!r}: expected KEY=VALUE", 2)
        env_map[key] = value
    body: dict[str, Any] = {
        "image": image,
        "command": list(command),
        "env": env_map,
        "job_class": job_class,
        "resources": {
            k: v
            for k, v in {
                "gpus": gpus,
                "gpu_memory_mib": gpu_memory_mib,
                "mig_profile": mig_profile,
                "vgpu_profile": vgpu_profile,
                "gpu_share_milli": gpu_share_milli,
                "cpu_milli": cpu_milli,
                "memory_mib": memory_mib,
            }.items()
            if v is not None
        },
        "checkpoint_grace_s": checkpoint_grace_s,
    }
    optional: dict[str, Any] = {"max_runtime_s": max_runtime_s, "service": service, "tenant": tenant, "name": name}
    body.update((key, value) for key, value in optional.items() if value is not None)
    res = _client(url, token, ca_file).call("POST", "/api/v1/jobs", json=body)
    if as_json:
        _print_json(res)
    elif quiet:
        click.echo(res["id"])
    else:
        click.echo(f"job {res['id']} submitted to tenant {res['tenant']} ({res['state']})")


@jobs_app.command("list")
@click.option("--state", multiple=True, help="Filter by state, repeatable")
@click.option("--tenant")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50)
@http_options
@json_option
def jobs_list(
    state: tuple[str, ...], tenant: str | None, limit: int, url: str, token: str, ca_file: Path | None, as_json: bool
) -> None:
    """List jobs, newest first."""
    params: list[tuple[str, str | int]] = [("limit", limit)]
    params += [("state", s) for s in state]
    if tenant:
        params.append(("tenant", tenant))
    res = _client(url, token, ca_file).call("GET", "/api/v1/jobs", params=params)
    if as_json:
        _print_json(res)
    else:
        _show(_jobs_table(res["jobs"]))


@jobs_app.command("get")
@click.argument("job_id")
@http_options
@json_option
def jobs_get(job_id: str, url: str, token: str, ca_file: Path | None, as_json: bool) -> None:
    """Show one job."""
    j = _client(url, token, ca_file).call("GET", f"/api/v1/jobs/{job_id}")
    if as_json:
        _print_json(j)
        return
    table = _table("field", "value", title=f"job {j['id']}")
    for key in ("tenant", "user", "name", "job_class", "state", "attempts", "node", "reason", "checkpoint_ref"):
        table.add_row(key, str(j[key]) if j[key] is not None else "-")
    for key in ("submitted_at", "started_at", "finished_at", "last_checkpoint_at", "preempt_deadline"):
        table.add_row(key, _ts(j[key]))
    table.add_row("image", j["spec"]["image"])
    table.add_row("command", shlex.join(j["spec"]["command"]))
    table.add_row("gpus", _gpu_text(j))
    _show(table)


@jobs_app.command("cancel")
@click.argument("job_id")
@http_options
def jobs_cancel(job_id: str, url: str, token: str, ca_file: Path | None) -> None:
    """Cancel a job."""
    j = _client(url, token, ca_file).call("POST", f"/api/v1/jobs/{job_id}/cancel")
    click.echo(f"job {j['id']} {j['state']}")


@jobs_app.command("events")
@click.argument("job_id")
@http_options
@json_option
def jobs_events(job_id: str, url: str, token: str, ca_file: Path | None, as_json: bool) -> None:
    """Show a job's event log."""
    evs = _client(url, token, ca_file).call("GET", f"/api/v1/jobs/{job_id}/events")
    if as_json:
        _print_json(evs)
        return
    table = _table("time", "event", "detail", title=f"events of {job_id}")
    for e in evs:
        table.add_row(_ts(e["at"]), e["kind"], json.dumps(e["detail"], sort_keys=True))
    _show(table)


@nodes_app.command("list")
@http_options
@json_option
def nodes_list(url: str, token: str, ca_file: Path | None, as_json: bool) -> None:
    """List nodes with GPU allocation."""
    nodes = _client(url, token, ca_file).call("GET", "/api/v1/nodes")
    if as_json:
        _print_json(nodes)
        return
    table = _table("node", "status", "gpus", "allocated", "jobs", "last heartbeat")
    for n in nodes:
        status = "down" if n["down"] else ("drained" if n["drained"] else "up")
        table.add_row(
            n["name"],
            status,
            str(len(n["gpus"])),
            f"{n['allocated_gpu_units']:.2f}",
            str(len(n["jobs"])),
            _ts(n["last_heartbeat"]),
        )
    _show(table)


@nodes_app.command("register")
@click.argument("name")
@click.argument("spec", type=_PATH)
@http_options
def nodes_register(name: str, spec: Path, url: str, token: str, ca_file: Path | None) -> None:
    """Register or update a node (as its agent or a platform admin), e.g. to try the scheduler out.

    SPEC: JSON file: cpu_milli, memory_mib, gpus (see docs/api.md).
    """
    try:
        body = json.loads(spec.read_text())
    except (OSError, ValueError) as exc:
        _fail(f"{spec}: {exc}", 2)
    n = _client(url, token, ca_file).call("PUT", f"/api/v1/nodes/{name}", json=body)
    click.echo(f"node {n['name']} registered with {len(n['gpus'])} GPUs")


def _drain(name: str, on: bool, url: str, token: str, ca: Path | None) -> None:
    verb = "drain" if on else "undrain"
    n = _client(url, token, ca).call("POST", f"/api/v1/admin/nodes/{name}/{verb}")
    click.echo(f"node {n['name']} {'drained' if n['drained'] else 'schedulable'}")


@nodes_app.command("drain")
@click.argument("name")
@http_options
def nodes_drain(name: str, url: str, token: str, ca_file: Path | None) -> None:
    """Stop placing new work on a node (running jobs continue)."""
    _drain(name, True, url, token, ca_file)


@nodes_app.command("undrain")
@click.argument("name")
@http_options
def nodes_undrain(name: str, url: str, token: str, ca_file: Path | None) -> None:
    """Make a drained node schedulable again."""
    _drain(name, False, url, token, ca_file)


@tenants_app.command("list")
@http_options
@json_option
def tenants_list(url: str, token: str, ca_file: Path | None, as_json: bool) -> None:
    """List tenants and their quotas."""
    rows = _client(url, token, ca_file).call("GET", "/api/v1/tenants")
    if as_json:
        _print_json(rows)
        return
    table = _table("tenant", "weight", "API calls/day", "GPU h/month", "upload bytes/month")
    for t in rows:
        table.add_row(
            t["name"],
            f"{t['fairshare_weight']:g}",
            str(t["api_calls_per_day"] or "unlimited"),
            str(t["gpu_hours_per_month"] or "unlimited"),
            str(t["upload_bytes_per_month"] or "unlimited"),
        )
    _show(table)


@tenants_app.command("usage")
@click.argument("name")
@http_options
@json_option
def tenants_usage(name: str, url: str, token: str, ca_file: Path | None, as_json: bool) -> None:
    """Show a tenant's quota usage."""
    u = _client(url, token, ca_file).call("GET", f"/api/v1/tenants/{name}/usage")
    if as_json:
        _print_json(u)
        return
    t = u["tenant"]
    table = _table("quota", "used", "limit", "used %", title=f"tenant {name}: {u['day']} / {u['month']}")

    def row(label: str, used: float, limit: float | None, key: str) -> None:
        ratio = u["ratios"][key]
        table.add_row(
            label,
            f"{used:g}",
            "unlimited" if limit is None else f"{limit:g}",
            "-" if ratio is None else f"{ratio * 100:.1f}",
        )

    row("API calls today", u["api_calls_today"], t["api_calls_per_day"], "api_calls_per_day")
    row("GPU hours this month", round(u["gpu_hours_month"], 3), t["gpu_hours_per_month"], "gpu_hours_per_month")
    row("upload bytes this month", u["upload_bytes_month"], t["upload_bytes_per_month"], "upload_bytes_per_month")
    _show(table)
    click.echo(f"fair-share usage (decayed): {u['decayed_gpu_hours']:.3f} GPU hours")


def main() -> None:
    app()
