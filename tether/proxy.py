"""The Cloud SQL proxy as a background process: start it until ready, report on it, stop it, reuse it."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tether.errors import ConfigError, TetherError, ToolMissing, tail_lines
from tether.paths import runtime_dir
from tether.processes import pid_exists
from tether.proxy_cmd import (
    DEFAULT_TIMEOUT,
    INSTALL_HINT,
    LOOPBACK,
    STOP_GRACE,
    V1_PROGRAM,
    V2_PROGRAM,
    ProxyOptions,
    classify_failure,
    is_ready,
    listening_inodes,
    major_from_name,
    parse_version_output,
    proxy_argv,
    proxy_env,
    validate_connection_name,
    validate_port,
)
from tether.secrets import mask_text

BINARY_ENV = "TETHER_PROXY_BINARY"
LOG_TAIL_LINES = 8
_POLL = 0.05
# PostgreSQL's SSLRequest: any server answers it with one byte, before any authentication.
_SSL_REQUEST = struct.pack("!II", 8, 80877103)
# Popen objects of the proxies this process started, kept so they are reaped (and never warned about).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ProxyStartFailed(TetherError):
    """The proxy could not be started or did not become ready; ``reason`` says which way."""

    def __init__(self, message: str, reason: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.log_tail = log_tail


@dataclass(frozen=True)
class ProxyBinary:
    path: str
    major: int

    @property
    def label(self) -> str:
        return f"{Path(self.path).name} v{self.major}"


@dataclass(frozen=True)
class ProxyFiles:
    directory: Path

    @property
    def pid_file(self) -> Path:
        return self.directory / "proxy.pid"

    @property
    def state_file(self) -> Path:
        return self.directory / "proxy.json"

    @property
    def log_file(self) -> Path:
        return self.directory / "proxy.log"

    @property
    def previous_log(self) -> Path:
        return self.directory / "proxy.previous.log"

    @property
    def lock_file(self) -> Path:
        return self.directory / "lock"


@dataclass(frozen=True)
class ProxyProcess:
    """A proxy this project started, as recorded next to its pid file."""

    pid: int
    instance: str
    address: str
    port: int
    binary: str
    major: int
    started_at: float
    start_ticks: int | None  # /proc start time: a recycled pid is not mistaken for our proxy
    argv: tuple[str, ...]


@dataclass(frozen=True)
class ProxyStatus:
    running: bool
    log_file: str
    ready: bool = False
    pid: int | None = None
    instance: str | None = None
    address: str | None = None
    port: int | None = None
    binary: str | None = None
    major: int | None = None
    started_at: float | None = None
    uptime_seconds: float | None = None
    already_running: bool = False
    stale_cleaned: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if not self.running:
            stale = " (a stale pid file was removed)" if self.stale_cleaned else ""
            return f"The Cloud SQL proxy is not running{stale}."
        state = "ready" if self.ready else "NOT accepting connections"
        uptime = _format_duration(self.uptime_seconds or 0)
        return (f"The Cloud SQL proxy for {self.instance} is running on {self.address}:{self.port}: pid {self.pid}, "
                f"{Path(self.binary or '').name} v{self.major}, up {uptime}, {state}. Log: {self.log_file}")


@dataclass(frozen=True)
class ProxyStopped:
    was_running: bool
    pid: int | None = None
    instance: str | None = None
    port: int | None = None
    forced: bool = False
    stale_cleaned: bool = False

    def summary(self) -> str:
        if self.was_running:
            how = "killed (it ignored SIGTERM)" if self.forced else "stopped"
            return f"The Cloud SQL proxy for {self.instance} on port {self.port} (pid {self.pid}) was {how}."
        if self.stale_cleaned:
            pid = f" (pid {self.pid})" if self.pid else ""
            return f"The Cloud SQL proxy was not running; its stale pid file{pid} was removed."
        return "The Cloud SQL proxy was not running."


def proxy_files() -> ProxyFiles:
    directory = runtime_dir() / "proxy"
    directory.mkdir(parents=True, exist_ok=True)
    return ProxyFiles(directory)


def find_proxy_binary() -> ProxyBinary:
    """TETHER_PROXY_BINARY, else ``cloud-sql-proxy`` (v2) on PATH, else ``cloud_sql_proxy`` (v1)."""
    override = os.environ.get(BINARY_ENV)
    if override:
        path = shutil.which(override)
        if path is None:
            raise ToolMissing(override, f"{BINARY_ENV}={override} is not an executable file. Point it at a proxy "
                                        f"binary, or unset it and {INSTALL_HINT}")
    else:
        path = shutil.which(V2_PROGRAM) or shutil.which(V1_PROGRAM)
        if path is None:
            raise ToolMissing(V2_PROGRAM, INSTALL_HINT)
    return ProxyBinary(path, detect_major(path))


def detect_major(path: str) -> int:
    """Ask the binary for its version; fall back to its name (v2 ``cloud-sql-proxy``, v1 ``cloud_sql_proxy``)."""
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                                stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return major_from_name(path)
    return parse_version_output(result.stdout + result.stderr) or major_from_name(path)


def start_proxy(instance: str, port: int, *, iam: bool = False, private_ip: bool = False,
                credentials_file: str | None = None, impersonate: str | None = None,
                health_port: int | None = None, timeout: float = DEFAULT_TIMEOUT, verify: bool = True) -> ProxyStatus:
    """Start the proxy in the background and return once it is ready; reuse one already serving this instance.

    ``verify`` sends one PostgreSQL SSLRequest through it: the v2 proxy only reaches the instance on the
    first connection, so this is what turns "instance not found" into a start failure rather than a later one.
    """
    # Always loopback: whoever reaches the proxy's port reaches the database with the proxy's Google identity.
    options = ProxyOptions(instance=validate_connection_name(instance), port=validate_port(port), address=LOOPBACK,
                           iam=iam, private_ip=private_ip, credentials_file=_credentials_path(credentials_file),
                           impersonate=impersonate or None, health_port=health_port)
    with _locked():
        current = _current_status()
        if current.running:
            if current.instance == options.instance and current.port == options.port:
                return replace(current, already_running=True)
            raise ProxyStartFailed(
                f"A Cloud SQL proxy started by tether already runs for {current.instance} on port {current.port} "
                f"(pid {current.pid}), so none was started for {options.instance} on port {options.port}. Stop it "
                "first with `invoke proxy.stop`; tether runs one proxy at a time.", reason="other-proxy")
        binary = find_proxy_binary()
        argv = proxy_argv(binary.path, binary.major, options)
        _refuse_taken_port(options)
        return _launch(binary, argv, options, timeout, verify)


def stop_proxy(grace: float = STOP_GRACE, *, expected_pid: int | None = None) -> ProxyStopped:
    """SIGTERM the proxy's process group, SIGKILL it after ``grace`` seconds; remove stale pid files.

    ``expected_pid`` stops it only if it is still that process (a context manager's own proxy).
    """
    with _locked():
        files = proxy_files()
        record = _read_state(files)
        if record is None:
            return ProxyStopped(False, stale_cleaned=_remove_state(files))
        if expected_pid is not None and record.pid != expected_pid:
            return ProxyStopped(False)
        if not process_alive(record.pid, record.start_ticks):
            _remove_state(files)
            return ProxyStopped(False, record.pid, record.instance, record.port, stale_cleaned=True)
        forced = _terminate(record.pid, record.start_ticks, grace)
        _remove_state(files)
        return ProxyStopped(True, record.pid, record.instance, record.port, forced=forced)


def proxy_status() -> ProxyStatus:
    """Running or not, and if so its pid, instance, port, uptime and whether it accepts connections."""
    with _locked():
        return _current_status()


def proxy_logs(lines: int = 50) -> str:
    """The last ``lines`` lines of the proxy's log (secrets masked); empty if it never ran here."""
    log_file = proxy_files().log_file
    if not log_file.exists():
        return ""
    return mask_text(tail_lines(log_file.read_bytes(), lines))


@contextmanager
def proxy_running(instance: str, port: int, *, iam: bool = False, private_ip: bool = False,
                  credentials_file: str | None = None, impersonate: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> Iterator[ProxyStatus]:
    """Reuse the proxy already serving ``instance`` on ``port``, or start one and stop it afterwards."""
    status = start_proxy(instance, port, iam=iam, private_ip=private_ip, credentials_file=credentials_file,
                         impersonate=impersonate, timeout=timeout)
    try:
        yield status
    finally:
        if not status.already_running:
            stop_proxy(expected_pid=status.pid)


# --- processes -------------------------------------------------------------------------------------------

def _stat_fields(process_dir: Path) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None if it is gone."""
    try:
        text = (process_dir / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the command name may contain spaces and parentheses


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State letter and start time (clock ticks since boot) from /proc, or None if there is no such process."""
    fields = _stat_fields(Path(f"/proc/{pid}"))
    return (fields[0], int(fields[19])) if fields is not None else None


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    """True if ``pid`` runs and (when known) is the same process as recorded; zombies count as dead."""
    if not Path("/proc/self/stat").exists():  # not Linux: no start time to compare
        return pid_exists(pid)
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, ticks = stat
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return start_ticks is None or ticks == start_ticks


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        with suppress(subprocess.TimeoutExpired):
            child.wait(timeout=0)
            del _CHILDREN[pid]
        return
    with suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The proxy leads its own session (start_new_session), so its pgid is its pid: this reaches its children too.
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


def _terminate(pid: int, start_ticks: int | None, grace: float) -> bool:
    """Stop the process group; True if SIGKILL was needed."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while process_alive(pid, start_ticks) and time.monotonic() < deadline:
        time.sleep(_POLL)
    forced = process_alive(pid, start_ticks)
    # Always, also after a clean exit: anything the proxy left in its group goes with it.
    _signal_group(pid, signal.SIGKILL)
    # SIGKILL is delivered, not done: on a busy machine a child can still be running a moment later. Wait for
    # the whole group, so that "stopped" means no process of it is left.
    deadline = time.monotonic() + 5
    while (process_alive(pid, start_ticks) or _group_has_live_members(pid)) and time.monotonic() < deadline:
        time.sleep(_POLL)
    _reap(pid)
    return forced


def _group_has_live_members(pgid: int) -> bool:
    """True while a process of group ``pgid`` other than a zombie exists (Linux; elsewhere False)."""
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(entry)
        if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


# --- starting --------------------------------------------------------------------------------------------

def _credentials_path(credentials_file: str | None) -> str | None:
    if not credentials_file:
        return None
    path = Path(credentials_file).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"The credentials file {credentials_file} does not exist. Pass the path of a service "
                          "account JSON key (`gcloud iam service-accounts keys create KEY.json --iam-account SA`), "
                          "or leave --credentials-file out to use `gcloud auth application-default login`.")
    # The proxy runs in .runtime/proxy, so a relative path would point elsewhere.
    return str(path)


def port_in_use(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        # As the proxy's own listener does, so a port in TIME_WAIT does not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def port_holder(port: int) -> str | None:
    """Which process listens on ``port``, as ``name (pid N)``, when /proc tells (root sees every process)."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError):
            inodes |= listening_inodes(Path(table).read_text(), port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in targets:
                    name = (proc / "comm").read_text().strip()
                    return f"{name} (pid {proc.name})"
        except OSError:
            continue
    return None


def _refuse_taken_port(options: ProxyOptions) -> None:
    if not port_in_use(options.address, options.port):
        return
    holder = port_holder(options.port)
    by = f" by {holder}" if holder else ""
    by_hand = (" If that is a Cloud SQL proxy started by hand, stop it and let `invoke proxy.start` run one it can "
               "track." if holder and "proxy" in holder else "")
    raise ProxyStartFailed(
        f"Port {options.port} on {options.address} is already in use{by}, so the Cloud SQL proxy for "
        f"{options.instance} was not started. Stop that program, or choose another port with --port (or "
        f"proxyPort in stacks/prod/Pulumi.prod.yaml).{by_hand}", reason="port-in-use")


def _launch(binary: ProxyBinary, argv: list[str], options: ProxyOptions, timeout: float,
            verify: bool) -> ProxyStatus:
    files = proxy_files()
    if files.log_file.exists() and files.log_file.stat().st_size:
        os.replace(files.log_file, files.previous_log)
    log_fd = os.open(files.log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                                   env=proxy_env(os.environ), cwd=files.directory, start_new_session=True)
    except OSError as error:
        raise ToolMissing(binary.path, f"it could not be run ({error.strerror}); {INSTALL_HINT}") from None
    finally:
        os.close(log_fd)
    _CHILDREN[process.pid] = process
    stat = _proc_stat(process.pid)
    record = ProxyProcess(pid=process.pid, instance=options.instance, address=options.address, port=options.port,
                          binary=binary.path, major=binary.major, started_at=time.time(),
                          start_ticks=stat[1] if stat else None, argv=tuple(argv))
    _write_state(files, record)
    try:
        _wait_ready(process, record, options, files, timeout)
        if verify:
            _verify(process, record, files, timeout)
    except BaseException:
        _terminate(process.pid, None, grace=1.0)
        _remove_state(files)
        raise
    return _status_of(record, files, ready=True)


def _wait_ready(process: subprocess.Popen[bytes], record: ProxyProcess, options: ProxyOptions, files: ProxyFiles,
                timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        log_text = _read_log(files)
        if is_ready(log_text) or (options.health_port is not None and _health_ok(options.health_port)):
            return
        code = process.poll()
        if code is not None:
            raise _start_failure(record, files, f"exited with code {code} before it was ready", "exited")
        if time.monotonic() > deadline:
            raise _start_failure(record, files, f"was not ready within {timeout:g} s, so it was stopped",
                                 "timeout")
        time.sleep(_POLL)


def _health_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/startup", timeout=0.5) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def probe_postgres(address: str, port: int, timeout: float) -> bool:
    """True if a PostgreSQL server answers an SSLRequest through ``address:port`` (no login is attempted)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as connection:
            connection.sendall(_SSL_REQUEST)
            return connection.recv(1) in (b"S", b"N")
    except OSError:
        return False


def _verify(process: subprocess.Popen[bytes], record: ProxyProcess, files: ProxyFiles, timeout: float) -> None:
    if probe_postgres(record.address, record.port, timeout=max(timeout, 5.0)):
        return
    # The proxy logs why it dropped the connection just after dropping it.
    deadline = time.monotonic() + 1.0
    while classify_failure(_read_log(files)) is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(_POLL)
    raise _start_failure(record, files, "said it was ready, but a test connection through it to the instance "
                         "failed, so it was stopped", "unreachable")


def _start_failure(record: ProxyProcess, files: ProxyFiles, what: str, default_reason: str) -> ProxyStartFailed:
    log_text = _read_log(files)
    diagnosis = classify_failure(log_text)
    tail = tail_lines(log_text, LOG_TAIL_LINES)
    if diagnosis is not None:
        reason, advice = diagnosis.reason, diagnosis.advice
        if diagnosis.line not in tail:  # e.g. an error followed by a page of usage text
            tail = diagnosis.line + "\n[...]\n" + tail_lines(log_text, 3)
    elif default_reason == "timeout":
        reason, advice = default_reason, ("It may still be fetching the instance's certificate over a slow network: "
                                          "try a longer --timeout, and read its log with `invoke proxy.logs`.")
    else:
        reason, advice = default_reason, f"Run it by hand to see more: `{shlex.join(record.argv)}`."
    tail = mask_text(tail)
    binary = ProxyBinary(record.binary, record.major).label
    message = f"The Cloud SQL proxy ({binary}) for {record.instance} on {record.address}:{record.port} {what}. {advice}"
    if tail:
        message += f" Its last log lines ({files.log_file}):\n{tail}"
    else:
        message += f" It wrote nothing to its log ({files.log_file})."
    return ProxyStartFailed(message, reason=reason, log_tail=tail)


# --- state files -----------------------------------------------------------------------------------------

@contextmanager
def _locked() -> Iterator[None]:
    """One start/stop/status at a time, so two tasks never start two proxies on one port."""
    files = proxy_files()
    with open(files.lock_file, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_log(files: ProxyFiles) -> str:
    try:
        return files.log_file.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def _write_state(files: ProxyFiles, record: ProxyProcess) -> None:
    for path, text in ((files.state_file, json.dumps(asdict(record), indent=2)), (files.pid_file, f"{record.pid}\n")):
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)


def _read_state(files: ProxyFiles) -> ProxyProcess | None:
    """The recorded proxy, or None; a pid file without readable state counts as stale, never as a pid to kill."""
    try:
        data = json.loads(files.state_file.read_text())
        data["argv"] = tuple(data["argv"])
        return ProxyProcess(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _remove_state(files: ProxyFiles) -> bool:
    removed = False
    for path in (files.pid_file, files.state_file):
        with suppress(FileNotFoundError):
            path.unlink()
            removed = True
    return removed


def _accepts_tcp(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


def _status_of(record: ProxyProcess, files: ProxyFiles, *, ready: bool) -> ProxyStatus:
    return ProxyStatus(running=True, log_file=str(files.log_file), ready=ready, pid=record.pid,
                       instance=record.instance, address=record.address, port=record.port, binary=record.binary,
                       major=record.major, started_at=record.started_at,
                       uptime_seconds=round(max(0.0, time.time() - record.started_at), 1))


def _current_status() -> ProxyStatus:
    files = proxy_files()
    record = _read_state(files)
    if record is None:
        return ProxyStatus(running=False, log_file=str(files.log_file), stale_cleaned=_remove_state(files))
    if not process_alive(record.pid, record.start_ticks):
        _remove_state(files)
        return ProxyStatus(running=False, log_file=str(files.log_file), pid=record.pid, instance=record.instance,
                           port=record.port, stale_cleaned=True)
    ready = is_ready(_read_log(files)) and _accepts_tcp(record.address, record.port)
    return _status_of(record, files, ready=ready)


def _format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
