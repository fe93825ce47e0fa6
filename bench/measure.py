"""Run one command under measurement: wall time, CPU time, peak RSS of its process tree.

The tree is sampled every POLL_INTERVAL seconds: each sample sums VmRSS over
the root and all its descendants (the tree's peak is the largest sum seen),
and each process's own VmHWM (the kernel's exact high-water mark) is kept per
command name, so the uploader of a pipeline (aws, rclone, restic, python) can
be told apart from tar and zstd. CPU seconds come from wait4's rusage, which
includes every descendant the shell waited for; the machine's busy time from
/proc/stat, less the tree's, the servers' (S3, PostgreSQL), the kernel
threads' (writeback of what the run wrote) and this process's, tells how
much CPU other processes took meanwhile (a noisy neighbour shows up there
rather than silently skewing a ratio). The child runs in its own
process group and is killed as a whole when it outlives its time limit.
"""

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]

POLL_INTERVAL = 0.025  # seconds between RSS samples
RESCAN_EVERY = 4  # look for new descendants every this many samples
CLK_TCK = os.sysconf("SC_CLK_TCK")
KTHREADD = 2  # parent of every kernel thread (kworker writeback, kswapd)
NCPU = os.cpu_count() or 1


@dataclass
class Measurement:
    command: str
    returncode: int
    wall_s: float
    cpu_s: float
    peak_tree_rss: int  # bytes: the largest sum of the tree's RSS seen in one sample
    peak_rss_by_name: dict[str, int] = field(default_factory=dict)  # VmHWM per command name
    watched_peak_rss: int = 0  # e.g. the S3 server's RSS during this run
    watched_cpu_s: float = 0.0  # the S3 server's CPU seconds during this run
    service_cpu_s: float = 0.0  # other servers the command uses (PostgreSQL), with their children
    kernel_cpu_s: float = 0.0  # kernel threads (writeback, reclaim) meanwhile
    background_cpu_s: float = 0.0  # CPU used by every other process on the machine meanwhile
    timed_out: bool = False
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def process_memory(pid: int) -> tuple[str, int, int]:
    """(name, VmRSS, VmHWM) in bytes from /proc/pid/status; ('', 0, 0) once it is gone."""
    name, rss, hwm = "", 0, 0
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Name:"):
                    name = line.split(None, 1)[1].strip().decode(errors="replace")
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
                elif line.startswith(b"VmRSS:"):  # comes right after VmHWM
                    rss = int(line.split()[1]) * 1024
                    break
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return "", 0, 0
    return name, rss, hwm


def system_busy_s() -> float:
    """CPU seconds the machine's processes have used since boot (all cores), plus steal.

    Interrupt and softirq time are left out: much of it is the loopback traffic
    of the run itself, which no process is charged for.
    """
    with open("/proc/stat") as handle:
        fields = handle.readline().split()
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + steal) / CLK_TCK


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of one process (0 when it is gone or None)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of a process, its live descendants and the children it has reaped.

    Taken before and after a run, the difference covers descendants that came
    and went meanwhile too (a PostgreSQL backend serving pg_dump): the parent's
    cutime/cstime absorb them when it reaps them.
    """
    if pid is None:
        return 0.0
    pids = [pid]
    with contextlib.suppress(psutil.Error):
        pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    total = 0.0
    for member in pids:
        try:
            with open(f"/proc/{member}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15]) / CLK_TCK
    return total


def wait_for_quiet(
    max_wait: float, *, threshold: float = 0.25, exclude_pid: int | None = None
) -> tuple[float, float]:
    """Wait (at most `max_wait` s) until other processes use under `threshold` cores.

    Returns (seconds waited, cores the others used in the last 1 s window). The
    S3 server (`exclude_pid`) and this process are not counted.
    """
    started = time.monotonic()
    others = 0.0
    while True:
        busy, server, own = system_busy_s(), process_cpu_s(exclude_pid), time.process_time()
        time.sleep(1.0)
        others = (system_busy_s() - busy) - (process_cpu_s(exclude_pid) - server)
        others -= time.process_time() - own
        waited = time.monotonic() - started
        if others < threshold or waited >= max_wait:
            return waited, max(0.0, others)


class TreeSampler(threading.Thread):
    """Samples the RSS of a process tree (and optionally one unrelated process) until stopped."""

    def __init__(self, root_pid: int, watch_pid: int | None = None) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.root_pid, self.watch_pid = root_pid, watch_pid
        self.peak_tree = 0
        self.peak_by_pid: dict[int, tuple[str, int]] = {}
        self.watched_peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        pids = [self.root_pid]
        count = 0
        while not self._stop_event.is_set():
            if count % RESCAN_EVERY == 0:
                pids = self._tree()
            count += 1
            total = 0
            for pid in pids:
                name, rss, hwm = process_memory(pid)
                if not name:
                    continue
                total += rss
                previous = self.peak_by_pid.get(pid, (name, 0))[1]
                self.peak_by_pid[pid] = (name, max(previous, hwm, rss))
            self.peak_tree = max(self.peak_tree, total)
            if self.watch_pid is not None:
                self.watched_peak = max(self.watched_peak, process_memory(self.watch_pid)[1])
            self._stop_event.wait(POLL_INTERVAL)

    def _tree(self) -> list[int]:
        try:
            root = psutil.Process(self.root_pid)
            return [self.root_pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.Error:
            return [self.root_pid]

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def peak_by_name(self) -> dict[str, int]:
        peaks: dict[str, int] = {}
        for name, peak in self.peak_by_pid.values():
            peaks[name] = max(peaks.get(name, 0), peak)
        return peaks


def run_measured(
    command: Sequence[str] | str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float,
    log_path: Path,
    cwd: Path | None = None,
    watch_pid: int | None = None,
    service_pids: Sequence[int] = (),
) -> Measurement:
    """Run `command` (a string runs under `bash -o pipefail -c`), measured, within `timeout` s."""
    if isinstance(command, str):
        argv = ["bash", "-o", "pipefail", "-c", command]
        shown = command
    else:
        argv = list(command)
        shown = " ".join(argv)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        log.write(f"$ {shown}\n".encode())
        log.flush()
        busy_before, watched_before = system_busy_s(), process_cpu_s(watch_pid)
        services_before = sum(tree_cpu_s(pid) for pid in service_pids)
        kernel_before = tree_cpu_s(KTHREADD)
        own_before = time.process_time()
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as a whole on timeout
        )
        sampler = TreeSampler(process.pid, watch_pid)
        sampler.start()
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _pid, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): take the whole group down
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            sampler.stop()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        busy = system_busy_s() - busy_before
        watched_cpu = process_cpu_s(watch_pid) - watched_before
        service_cpu = sum(tree_cpu_s(pid) for pid in service_pids) - services_before
        kernel_cpu = tree_cpu_s(KTHREADD) - kernel_before
        own_cpu = time.process_time() - own_before
        # whatever the shell left behind (it should be nothing) goes with the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    by_name = sampler.peak_by_name()
    return Measurement(
        command=shown,
        returncode=process.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        # Not wait4's ru_maxrss as a floor: across vfork+exec it carries this
        # harness's own high-water mark into the child's. Each process's VmHWM is
        # exact, so the largest is a true floor for a sample that came too late.
        peak_tree_rss=max(sampler.peak_tree, *by_name.values(), 0),
        peak_rss_by_name=by_name,
        watched_peak_rss=sampler.watched_peak,
        watched_cpu_s=watched_cpu,
        service_cpu_s=service_cpu,
        kernel_cpu_s=kernel_cpu,
        background_cpu_s=max(
            0.0,
            busy
            - usage.ru_utime
            - usage.ru_stime
            - watched_cpu
            - service_cpu
            - kernel_cpu
            - own_cpu,
        ),
        timed_out=timed_out.is_set(),
        log=tail(log_path),
    )


def tail(path: Path, size: int = 2000) -> str:
    """The last `size` bytes of a log file, as text; "" if there is none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
