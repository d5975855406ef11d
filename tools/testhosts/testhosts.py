#!/usr/bin/env python3
"""Build, cache, start and stop the project's real test hosts.

Two kinds of host, both made from Debian's archive alone (see docs/testing.md):

* a system container (rootful podman, systemd as PID 1) for roles that need packages, files and
  services but no kernel of their own;
* a QEMU (TCG) virtual machine booting Debian's own kernel, with ZFS built by DKMS and blank
  virtio disks, for everything that needs a real kernel.

Images are cached under ``$XDG_CACHE_HOME/gpunas/testhosts/<kind>-<key>`` where the key hashes the
build scripts, the package lists and the versions of the kernel and zfs-dkms that the archive
offers today; a build happens only when the key changes. Test VMs run on throw-away qcow2
overlays, so no test ever writes the cached image.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MIRROR = os.environ.get("GPUNAS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CONTAINER_IMAGE = "localhost/gpunas-testhost:bookworm"
CONTAINERS_CONF = HERE / "containers.conf"
VM_BOOT_TIMEOUT = int(os.environ.get("GPUNAS_VM_BOOT_TIMEOUT", "420"))
# Free space a build needs: the VM build holds an uncompressed root tree plus its disk image.
NEEDED_GIB = {"container": 2, "vm": 12}

PREREQUISITES = {
    "container": {
        "podman": "podman",
        "debootstrap": "debootstrap",
        "runc": "runc",
    },
    "vm": {
        "qemu-system-x86_64": "qemu-system-x86",
        "qemu-img": "qemu-utils",
        "debootstrap": "debootstrap",
        "ssh": "openssh-client",
        "ssh-keygen": "openssh-client",
        "mkfs.ext4": "e2fsprogs",
    },
}


class Refusal(Exception):
    """A problem the user can fix; printed as one message, never as a traceback."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpunas" / "testhosts"


def log(message: str) -> None:
    print(f"testhosts: {message}", file=sys.stderr, flush=True)


def check_prerequisites(kinds: list[str], building: bool) -> None:
    missing = sorted({pkg for kind in kinds for tool, pkg in PREREQUISITES[kind].items() if shutil.which(tool) is None})
    what = f"{' and '.join(kinds)} test host{'s' if len(kinds) > 1 else ''}"
    if missing:
        raise Refusal(
            f"the {what} need{'' if len(kinds) > 1 else 's'} tools that are not installed: {' '.join(missing)}. "
            f"Install them with: apt-get install -y {' '.join(missing)} (or run tools/install-deps as root)"
        )
    if os.geteuid() != 0:
        verb = "are" if len(kinds) > 1 else "is"
        raise Refusal(f"the {what} {verb} built and run as root (debootstrap, rootful podman); run as root")
    if building:
        cache = cache_root()
        cache.mkdir(parents=True, exist_ok=True)
        needed = sum(NEEDED_GIB[kind] for kind in kinds)
        free_gib = shutil.disk_usage(cache).free / 2**30
        if free_gib < needed:
            raise Refusal(
                f"building the {what} needs {needed} GiB free under {cache}, "
                f"only {free_gib:.1f} GiB are free; free some space or set XDG_CACHE_HOME to a larger disk"
            )


def _digest(paths: list[Path], extra: list[str]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for item in extra:
        h.update(item.encode())
    return h.hexdigest()[:16]


def archive_versions() -> dict[str, str]:
    """Versions of the kernel and zfs-dkms that Debian's archive offers today (main + contrib).

    Reads the archive with a private apt state so that the host's sources stay as they are.
    """
    state = cache_root() / "apt-state"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    sources = state / "sources.list"
    opts = [
        f"-oDir::Etc::SourceList={sources}",
        "-oDir::Etc::SourceParts=-",
        f"-oDir::State::Lists={state / 'lists'}",
        "-oAPT::Get::List-Cleanup=0",
    ]
    # Two builds at once would both read the index; apt-get would refuse the second ("Could not
    # get lock"), so they take turns.
    with open(state / "testhosts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sources.write_text(f"deb {MIRROR} bookworm main contrib\ndeb {MIRROR} bookworm-updates main contrib\n")
        run(["apt-get", "-qq", *opts, "update"], what="reading Debian's package index")
        out = run(["apt-cache", *opts, "policy", "linux-image-amd64", "zfs-dkms"], capture=True)
    versions: dict[str, str] = {}
    package = ""
    for line in out.splitlines():
        if line and not line.startswith(" "):
            package = line.rstrip(":")
        elif line.strip().startswith("Candidate:"):
            versions[package] = line.split(":", 1)[1].strip()
    if versions.get("linux-image-amd64", "(none)") == "(none)" or versions.get("zfs-dkms", "(none)") == "(none)":
        raise Refusal(f"Debian's archive at {MIRROR} does not offer linux-image-amd64 and zfs-dkms: {versions}")
    return versions


def build_files(kind: str) -> list[Path]:
    return [HERE / f"build-{kind}.sh", HERE / f"packages-{kind}.txt"]


def scripts_digest(kind: str) -> str:
    """Digest of what builds an image of ``kind``: its build script, package list and mirror."""
    return _digest(build_files(kind), [MIRROR])


def image_key(kind: str) -> str:
    """The cache key: the build scripts and, for the VM, what Debian's archive offers today."""
    extra = [MIRROR]
    if kind == "vm":
        extra += [f"{k}={v}" for k, v in sorted(archive_versions().items())]
    return _digest(build_files(kind), extra)


def run(cmd: list[str], what: str = "", capture: bool = False, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(cmd, check=False, text=True, capture_output=True, env=env)
    except FileNotFoundError as exc:
        raise Refusal(f"{cmd[0]} is not installed ({what or 'needed here'})") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise Refusal(f"{what or cmd[0]} failed (rc={proc.returncode}): " + "\n  ".join(["", *detail]))
    return proc.stdout if capture else ""


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def container_image_key_in_podman() -> str | None:
    proc = subprocess.run(
        ["podman", "image", "inspect", "--format", '{{ index .Labels "gpunas.testhost.key" }}', CONTAINER_IMAGE],
        check=False,
        text=True,
        capture_output=True,
        env=podman_env(),
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def build_container(force: bool) -> None:
    check_prerequisites(["container"], building=True)
    key = image_key("container")
    if not force and container_image_key_in_podman() == key:
        log(f"container image {CONTAINER_IMAGE} is current (key {key})")
        return
    out = cache_root() / f"container-{key}"
    out.mkdir(parents=True, exist_ok=True)
    log(f"building container image {CONTAINER_IMAGE} (key {key}, about 1.5 min)")
    started = time.monotonic()
    env = podman_env()
    run(["bash", str(HERE / "build-container.sh"), str(out), CONTAINER_IMAGE, key, MIRROR], "container build", env=env)
    log(f"container image built in {time.monotonic() - started:.0f} s")


def vm_record() -> Path:
    """Where ``build vm`` records the image it built or found current, for ``up`` to use."""
    return cache_root() / "current-vm.json"


def vm_dir() -> Path:
    """The VM image that ``build vm`` last recorded, if it still matches the build scripts.

    ``up`` does not read Debian's index: whether the archive moved on is ``build``'s question,
    asked once per test run, not once per VM.
    """
    check_prerequisites(["vm"], building=False)
    hint = "run: tools/testhosts/testhosts.py build vm"
    try:
        record = json.loads(vm_record().read_text())
    except (OSError, ValueError):
        raise Refusal(f"no VM image is recorded as built in {vm_record()}; {hint}") from None
    if record.get("scripts") != scripts_digest("vm"):
        raise Refusal(f"the VM build scripts changed since image {record.get('key')} was built; {hint}")
    out = cache_root() / f"vm-{record.get('key')}"
    if not (out / "base.qcow2").exists():
        raise Refusal(f"the recorded VM image {out} is missing; {hint}")
    return out


def build_vm(force: bool) -> None:
    check_prerequisites(["vm"], building=True)
    key = image_key("vm")
    out = cache_root() / f"vm-{key}"
    if not force and (out / "base.qcow2").exists():
        log(f"VM image is current (key {key}, {out})")
        record_vm(key)
        return
    log(f"building VM image (key {key}, about 8 min: debootstrap, ZFS DKMS build, disk image)")
    tmp = Path(tempfile.mkdtemp(prefix=f"vm-{key}.", dir=cache_root()))
    started = time.monotonic()
    try:
        run(["bash", str(HERE / "build-vm.sh"), str(tmp), MIRROR], "VM image build")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"VM image built in {time.monotonic() - started:.0f} s")
    record_vm(key)
    for stale in cache_root().glob("vm-*"):
        if stale != out and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def record_vm(key: str) -> None:
    tmp = vm_record().with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "scripts": scripts_digest("vm")}) + "\n")
    tmp.replace(vm_record())


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ssh_base(image: Path, port: int) -> list[str]:
    return [
        "ssh",
        "-i",
        str(image / "id_ed25519"),
        "-p",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "BatchMode=yes",
        "root@127.0.0.1",
    ]


class Qmp:
    """A QEMU Machine Protocol session over the VM's unix socket.

    Twenty lines of JSON over a socket, written here because testhosts.py runs on the machine's
    own python3 before any virtualenv exists (the ``qemu.qmp`` package would need one).
    """

    def __init__(self, path: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise Refusal(f"QEMU's monitor socket {path} did not answer in {timeout:.0f} s") from None
                time.sleep(0.1)
        self.stream = self.sock.makefile("rw", encoding="utf-8")
        json.loads(self.stream.readline())
        self.command("qmp_capabilities")

    def command(self, name: str, **arguments: object) -> object:
        self.stream.write(json.dumps({"execute": name, "arguments": arguments}) + "\n")
        self.stream.flush()
        while True:
            answer = json.loads(self.stream.readline())
            if "return" in answer:
                return answer["return"]
            if "error" in answer:
                raise Refusal(f"QEMU refused {name}: {answer['error'].get('desc')}")

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def qemu_command(image: Path, spec: dict, vm: Path, overlay: Path, port: int) -> list[str]:
    """The QEMU command line of a test VM, blank disks aside.

    A saved state loads only into the same machine, so everything here is also what keys a saved
    state (``saved_state_key``); blank disks differ per scenario and are plugged in after a load.
    """
    return [
        "qemu-system-x86_64",
        "-name",
        spec["name"],
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        str(spec.get("cpus", 2)),
        "-m",
        str(spec.get("memory_mib", 2048)),
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        f"file:{vm / 'console.log'}",
        "-kernel",
        str(image / "vmlinuz"),
        "-initrd",
        str(image / "initrd.img"),
        "-append",
        # Under TCG on a busy 2-core machine, udev can take two minutes to come up; the default
        # 90 s job timeout then drops a reboot into emergency mode waiting for an md device that
        # is about to appear. Reboots kexec with this command line, so it holds for them too.
        "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet systemd.default_timeout_start_sec=600",
        # Fixed PCI slots: the root disk probes first and stays /dev/vda whatever disks follow.
        "-drive",
        f"file={overlay},if=none,id=root,format=qcow2,discard=unmap",
        "-device",
        "virtio-blk-pci,drive=root,addr=0x4",
        "-netdev",
        f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=net0,addr=0x5",
        "-qmp",
        f"unix:{vm / 'qmp.sock'},server=on,wait=off",
        "-pidfile",
        str(vm / "qemu.pid"),
        "-daemonize",
    ]


def cold_boot() -> bool:
    """GPUNAS_VM_COLD_BOOT=1: boot every VM's kernel instead of loading a saved state."""
    return os.environ.get("GPUNAS_VM_COLD_BOOT") == "1"


def create_overlay(backing: Path, overlay: Path) -> None:
    """A throw-away qcow2 over ``backing``, which stays as it is."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", "qcow2", str(overlay)],
        f"creating {overlay.name} over {backing}")


def blank_disks(spec: dict, vm: Path) -> list[tuple[int, Path]]:
    disks = []
    for index in range(int(spec.get("disks", 0))):
        disk = vm / f"disk{index}.img"
        with open(disk, "wb") as handle:
            handle.truncate(parse_size(str(spec.get("disk_size", "512M"))))
        disks.append((index, disk))
    return disks


def disk_device(index: int) -> dict[str, str]:
    """The blank disk's virtio device: its serial makes /dev/disk/by-id/virtio-disk<index>."""
    return {"driver": "virtio-blk-pci", "drive": f"disk{index}", "serial": f"disk{index}",
            "addr": f"{0x10 + index:#x}", "id": f"dev-disk{index}"}


def saved_state_key(image: Path, spec: dict) -> str:
    """What a saved state depends on: the image, QEMU's version and the machine's command line."""
    version = run(["qemu-system-x86_64", "--version"], "asking QEMU its version", capture=True)
    shape = qemu_command(image, {"name": "saved", **spec}, Path("/vm"), Path("/root.qcow2"), 0)
    return hashlib.sha256(json.dumps([image.name, version, shape]).encode()).hexdigest()[:16]


def saved_state(image: Path, spec: dict) -> Path:
    """A booted, SSH-ready VM saved once per image and machine shape: its disk and its RAM.

    The first ``up`` that needs a shape boots a VM without blank disks, waits until systemd
    reports the system up, drops the page cache (a smaller state loads faster), stops it and
    writes its state through QEMU's migration to a file beside a frozen copy of its disk. Later
    VMs of that shape load the state on their own overlay of that disk instead of booting.
    Concurrent callers take turns under a lock, so a shape is saved once.
    """
    shape = {"memory_mib": spec.get("memory_mib", 2048), "cpus": spec.get("cpus", 2)}
    saved = image / f"saved-{shape['memory_mib']}m-{shape['cpus']}c"
    key = saved_state_key(image, shape)
    with open(image / f"{saved.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError):
            if (saved / "key").read_text() == key and (saved / "state").exists():
                return saved
        log(f"saving a booted VM ({shape['memory_mib']} MiB, {shape['cpus']} CPUs) for later VMs to start from")
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f"{saved.name}.", dir=image))
        try:
            disk = tmp / "booted.qcow2"
            create_overlay(image / "base.qcow2", disk)
            config = boot_vm(image, {"name": "saved", **shape}, tmp, disk, incoming=None)
            wait_for_ssh(image, config, tmp)
            run([*ssh_base(image, config["port"]), "sync && echo 3 >/proc/sys/vm/drop_caches"],
                "dropping the saved VM's page cache")
            qmp = Qmp(tmp / "qmp.sock")
            try:
                qmp.command("stop")
                qmp.command("migrate", uri=f"exec:cat >{tmp / 'state'}")
                while (status := qmp.command("query-migrate").get("status")) not in ("completed", "failed"):
                    time.sleep(0.2)
                if status != "completed":
                    raise Refusal("QEMU could not save the booted VM's state")
                with contextlib.suppress(OSError):
                    qmp.command("quit")
            finally:
                qmp.close()
            wait_for_exit(tmp)
            (tmp / "key").write_text(key)
            for leftover in ("console.log", "qemu.pid", "qmp.sock", "port"):
                (tmp / leftover).unlink(missing_ok=True)
            shutil.rmtree(saved, ignore_errors=True)
            tmp.rename(saved)
        except BaseException:
            stop_vm(tmp)
            raise
        size = (saved / "state").stat().st_size / 2**20
        log(f"booted VM saved in {time.monotonic() - started:.0f} s ({size:.0f} MiB of state)")
        return saved


def boot_vm(image: Path, spec: dict, vm: Path, overlay: Path, incoming: Path | None,
            disks: list[tuple[int, Path]] | None = None) -> dict:
    """Start QEMU on ``overlay``, booting it or, given a saved state, loading that; return its config."""
    port = free_port()
    cmd = qemu_command(image, spec, vm, overlay, port)
    for index, disk in disks or []:
        device = ",".join(f"{k}={v}" for k, v in disk_device(index).items() if k != "driver")
        cmd += ["-drive", f"file={disk},if=none,id=disk{index},format=raw,discard=unmap",
                "-device", f"virtio-blk-pci,{device}"]
    if incoming:
        cmd += ["-incoming", f"exec:cat {incoming}"]
    run(cmd, f"starting VM {spec['name']}")
    (vm / "port").write_text(str(port))
    return {
        "instance": spec["name"],
        "address": "127.0.0.1",
        "user": "root",
        "port": port,
        "identity_file": str(image / "id_ed25519"),
    }


def plug_disks(vm: Path, disks: list[tuple[int, Path]]) -> None:
    """Wait for a VM to load its state, hot-plug its blank disks in the slots a cold boot uses and
    let it run (the state was saved stopped, so it loads paused)."""
    qmp = Qmp(vm / "qmp.sock")
    try:
        while (status := qmp.command("query-migrate").get("status")) not in ("completed", "failed"):
            time.sleep(0.1)
        if status != "completed":
            raise Refusal(f"VM {vm.name} could not load its saved state; GPUNAS_VM_COLD_BOOT=1 boots instead")
        for index, disk in disks:
            qmp.command("blockdev-add", driver="raw", discard="unmap", file={"driver": "file", "filename": str(disk)},
                        **{"node-name": f"disk{index}"})
            qmp.command("device_add", **disk_device(index))
        qmp.command("cont")
    finally:
        qmp.close()


def start_vm(image: Path, spec: dict, state: Path) -> tuple[dict, int | None]:
    """Start one VM on a fresh overlay with its blank disks; return molecule's instance config and
    the number of hot-plugged disks to wait for (``None`` after a cold boot, which attaches them).

    The VM starts from the saved state of its machine shape (``saved_state``) and gets its blank
    disks hot-plugged; with GPUNAS_VM_COLD_BOOT=1 it boots its kernel instead, disks attached from
    the start. A reboot inside a scenario is a real reboot either way.
    """
    vm = state / spec["name"]
    if vm.exists():
        stop_vm(vm)
    vm.mkdir(parents=True)
    overlay = vm / "root.qcow2"
    saved = None if cold_boot() else saved_state(image, spec)
    backing = saved / "booted.qcow2" if saved else image / "base.qcow2"
    create_overlay(backing, overlay)
    disks = blank_disks(spec, vm)
    if not saved:
        return boot_vm(image, spec, vm, overlay, incoming=None, disks=disks), None
    config = boot_vm(image, spec, vm, overlay, incoming=saved / "state")
    plug_disks(vm, disks)
    return config, len(disks)


def wait_for_ssh(image: Path, config: dict, vm: Path, plugged: int | None = None) -> None:
    """Wait until the VM answers SSH with systemd up. A VM loaded from a saved state (``plugged``:
    the number of disks hot-plugged into it) also gets the controller's clock (its own stopped when
    the state was saved) and waits for those disks."""
    deadline = time.monotonic() + VM_BOOT_TIMEOUT
    restored = plugged is not None
    ready = "systemctl is-system-running --wait >/dev/null; true"
    if restored:
        disks = " ".join(f"/dev/disk/by-id/virtio-disk{i}" for i in range(plugged))
        ready = (f"date -u -s @{int(time.time())} >/dev/null && udevadm settle && "
                 f"for d in {disks}; do until test -b $d; do sleep 0.2; done; done")
    while time.monotonic() < deadline:
        proc = subprocess.run([*ssh_base(image, config["port"]), ready], check=False, capture_output=True,
                              timeout=VM_BOOT_TIMEOUT)
        if proc.returncode == 0:
            return
        time.sleep(1 if restored else 3)
    console = vm / "console.log"
    tail = console.read_text(errors="replace").splitlines()[-20:] if console.exists() else []
    console_tail = "\n  ".join(tail)
    raise Refusal(f"VM {config['instance']} did not answer SSH in {VM_BOOT_TIMEOUT} s; console:\n  {console_tail}")


def wait_for_exit(vm: Path) -> None:
    """Wait up to 30 s for the QEMU of ``vm`` to exit after a ``quit``."""
    with contextlib.suppress(ValueError, OSError):
        pid = int((vm / "qemu.pid").read_text().strip())
        for _ in range(300):
            os.kill(pid, 0)
            time.sleep(0.1)


def parse_size(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def stop_vm(vm: Path) -> None:
    pidfile = vm / "qemu.pid"
    if pidfile.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(vm, ignore_errors=True)


def cmd_check(args: argparse.Namespace) -> None:
    check_prerequisites(args.kinds, building=True)
    log("prerequisites present: " + ", ".join(args.kinds))


def cmd_build(args: argparse.Namespace) -> None:
    check_prerequisites(args.kinds, building=True)
    for kind in args.kinds:
        (build_container if kind == "container" else build_vm)(args.force)


def cmd_up(args: argparse.Namespace) -> None:
    specs = json.loads(args.platforms)
    image = vm_dir()
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)

    def up(spec: dict) -> dict:
        started = time.monotonic()
        config, plugged = start_vm(image, spec, state)
        wait_for_ssh(image, config, state / spec["name"], plugged)
        how = "booted" if plugged is None else f"from saved state, {plugged} disks hot-plugged"
        log(f"VM {spec['name']} answers over SSH {time.monotonic() - started:.1f} s after start ({how})")
        return config

    try:
        # One at a time through the saved-state lock, then all wait for SSH together.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(specs) or 1) as pool:
            configs = list(pool.map(up, specs))
    except Refusal:
        for spec in specs:
            stop_vm(state / spec["name"])
        raise
    json.dump(configs, sys.stdout, indent=2)
    print()


def cmd_down(args: argparse.Namespace) -> None:
    state = Path(args.state_dir)
    names = args.names or ([p.name for p in state.iterdir() if p.is_dir()] if state.exists() else [])
    for name in names:
        console = state / name / "console.log"
        if args.keep_console and console.exists():
            Path(args.keep_console).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(console, Path(args.keep_console) / f"{name}.console.log")
        stop_vm(state / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    kinds = {"nargs": "*", "metavar": "{container,vm}"}
    p = sub.add_parser("check", help="check that the tools and disk space for the test hosts are there")
    p.add_argument("kinds", **kinds)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("build", help="build the images whose cache key changed")
    p.add_argument("kinds", **kinds)
    p.add_argument("--force", action="store_true", help="rebuild even when the cached image is current")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("up", help="start VMs on throw-away overlays; print molecule's instance config as JSON")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--platforms", required=True, help="JSON list of {name, disks, disk_size, memory_mib, cpus}")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop VMs and delete their overlays and disks")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--keep-console", metavar="DIR", help="copy each VM's serial console log into DIR first")
    p.add_argument("names", nargs="*")
    p.set_defaults(func=cmd_down)
    args = parser.parse_args(argv)
    if "kinds" in args:
        unknown = sorted(set(args.kinds) - {"container", "vm"})
        if unknown:
            parser.error(f"unknown kind {', '.join(unknown)}: choose container or vm")
        args.kinds = args.kinds or ["container", "vm"]
    try:
        args.func(args)
    except Refusal as exc:
        log(str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
