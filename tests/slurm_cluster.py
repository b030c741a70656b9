"""A throw-away single-node SLURM cluster on localhost, for the SLURM tests (`make test-slurm`).

    cluster = LocalSlurmCluster(tmp_path / "slurm", cpus=2)
    cluster.start()                      # munged, mariadbd, slurmdbd, slurmctld, slurmd; waits for the node
    subprocess.run(["sbatch", ...], env=cluster.env())
    cluster.stop()                       # always: terminates every daemon it started

    python tests/slurm_cluster.py        # start one by hand, print its SLURM_CONF, stop on Enter

Everything lives in one folder (configs, keys, state, logs, database); nothing under /etc is read or
changed, so it can run next to a real installation. The daemons run as root in the foreground as
children of this process. Accounting (slurmdbd on a private MariaDB) is part of it because submitit
learns that a job was cancelled or killed only from `sacct`; without it, a launcher would wait forever
for a cancelled job's result.

Debian packages: slurm-wlm (slurmctld, slurmd, client commands), munge, slurmdbd, mariadb-server.
:func:`ensure_packages` installs the missing ones with apt when running as root and otherwise says why
they are missing; every wait is bounded, and a failed start raises :class:`ClusterUnavailable` with the
daemon's log tail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = {  # binary -> Debian package
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sbatch": "slurm-client",
    "sacct": "slurm-client",
    "munged": "munge",
    "slurmdbd": "slurmdbd",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
}
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


class ClusterUnavailable(RuntimeError):
    """The cluster cannot run here; the message says what is missing (tests skip with it)."""


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path=os.pathsep.join(SBIN))


def missing_binaries() -> list[str]:
    return [b for b in PACKAGES if _which(b) is None]


def ensure_packages(timeout_s: float = 600) -> None:
    """Install the Debian packages the cluster needs when they are missing (as root, with apt)."""
    missing = missing_binaries()
    if not missing:
        return
    packages = sorted({PACKAGES[b] for b in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ClusterUnavailable(
            f"SLURM test cluster: {', '.join(missing)} not installed and cannot install them here "
            f"(needs root and apt-get): apt-get install {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + timeout_s
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        left = deadline - time.monotonic()
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=max(left, 1))
        except subprocess.TimeoutExpired as err:
            raise ClusterUnavailable(
                f"SLURM test cluster: `{' '.join(command)}` took over {timeout_s:.0f} s"
            ) from err
        if proc.returncode != 0:
            raise ClusterUnavailable(
                f"SLURM test cluster: `{' '.join(command)}` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}"
            )
    still = missing_binaries()
    if still:
        raise ClusterUnavailable(
            f"SLURM test cluster: still missing after apt-get install: {', '.join(still)}"
        )


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the process that started the daemon dies, so a killed
    test run leaves no cluster behind."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"(no log at {path})"


class LocalSlurmCluster:
    """One node (this host, `cpus` CPUs, one partition `debug`) with accounting, all under `root`."""

    def __init__(
        self, root: str | os.PathLike, cpus: int = 2, memory_mb: int = 8000, name: str = "transmitertest"
    ):
        self.root = Path(root).resolve()
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.name = name
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "etc" / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self._procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}

    # --- environment for client commands ------------------------------------------------------
    def env(self, base: dict | None = None) -> dict[str, str]:
        """`base` (default os.environ) with SLURM_CONF pointing at this cluster and sbin on PATH."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), *SBIN])
        return env

    def command(self, *args: str, timeout: float = 30, check: bool = True) -> str:
        proc = subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout_s: float = 90) -> None:
        """Write the configs and start the daemons; raise ClusterUnavailable (with logs) if the node does
        not come up idle within `timeout_s`."""
        if os.geteuid() != 0:
            raise ClusterUnavailable(
                "SLURM test cluster: the daemons must run as root (slurmd starts jobs as their user)"
            )
        missing = missing_binaries()
        if missing:
            raise ClusterUnavailable(f"SLURM test cluster: not installed: {', '.join(missing)}")
        deadline = time.monotonic() + timeout_s
        try:
            self._write_configs()
            self._start_munge(deadline)
            self._start_database(deadline)
            self._start(
                "slurmdbd", [_which("slurmdbd"), "-D"], deadline, ready=lambda: self._port_open(self.dbd_port)
            )
            self._start(
                "slurmctld",
                [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)],
                deadline,
                ready=lambda: self.command("scontrol", "ping", check=False).count("UP") > 0,
            )
            self._start(
                "slurmd",
                [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node],
                deadline,
                ready=self._node_idle,
            )
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 20) -> None:
        """Cancel what is still queued, terminate the daemons (last started first, killing those that do not
        exit in time), then kill any process left over from a job step of this cluster (slurmstepd, srun and
        job processes whose environment names this cluster's config)."""
        if self._procs.get("slurmctld") and self._procs["slurmctld"].poll() is None:
            try:
                ids = [job["id"] for job in self.jobs()]
                if ids:
                    self.command("scancel", *ids, check=False)
                self.wait_until(lambda: not self.jobs(), 30, "the queue emptying", poll_s=0.5)
            except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
                pass  # the daemons go anyway; leftovers are killed below
        for name, proc in reversed(list(self._procs.items())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            self._procs.pop(name)
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        marker = f"SLURM_CONF={self.conf}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass  # gone, or not ours to read

    def __enter__(self) -> LocalSlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self, daemon: str) -> str:
        return _tail(self._logs.get(daemon, self.root / "log" / f"{daemon}.log"), 4000)

    # --- jobs ---------------------------------------------------------------------------------
    def jobs(self) -> list[dict[str, str]]:
        """The queue (squeue): id, name, state, reason."""
        out = self.command("squeue", "-h", "-o", "%i|%j|%T|%r")
        return [dict(zip(("id", "name", "state", "reason"), ln.split("|"))) for ln in out.splitlines() if ln]

    def accounting(self, job_id: str) -> dict[str, str]:
        """sacct's state of each part of a job ({job id or step: state})."""
        out = self.command("sacct", "-n", "-P", "-o", "JobID,State", "-j", str(job_id))
        return dict(ln.split("|", 1) for ln in out.splitlines() if "|" in ln)

    def wait_until(self, predicate, timeout_s: float, what: str, poll_s: float = 0.5):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll_s)
        raise TimeoutError(
            f"SLURM test cluster: {what} did not happen within {timeout_s:.0f} s; queue: {self.jobs()}"
        )

    # --- internals ----------------------------------------------------------------------------
    def _write_configs(self) -> None:
        for sub in ("etc", "munge", "log", "state", "spool", "db", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.ctld_port, self.slurmd_port, self.dbd_port, self.db_port = (free_port() for _ in range(4))
        log, run = self.root / "log", self.root / "run"
        self.conf.write_text(
            "\n".join(
                [
                    f"ClusterName={self.name}",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={self.ctld_port}",
                    f"SlurmdPort={self.slurmd_port}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={run / 'slurmctld.pid'}",
                    f"SlurmdPidFile={run / 'slurmd.pid'}",
                    f"SlurmctldLogFile={log / 'slurmctld.log'}",
                    f"SlurmdLogFile={log / 'slurmd.log'}",
                    "SlurmctldDebug=info",
                    "SlurmdDebug=info",
                    # no cgroups in containers: track job processes through /proc
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "MpiDefault=none",
                    "SwitchType=switch/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",  # one job per CPU: two 1-CPU jobs run side by side
                    "SchedulerType=sched/backfill",
                    "SlurmdParameters=config_overrides",  # trust the CPU count below, whatever the host has
                    "ReturnToService=2",
                    "KillWait=5",  # scancel: SIGTERM, then SIGKILL after 5 s
                    "MinJobAge=600",
                    "InactiveLimit=0",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/slurmdbd",
                    "AccountingStorageHost=127.0.0.1",
                    f"AccountingStoragePort={self.dbd_port}",
                    # for the slurmdbd connection this names the munge socket, not a password
                    f"AccountingStoragePass={self.munge_socket}",
                    f"PlugStackConfig={self.root / 'etc' / 'plugstack.conf'}",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
                    f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        (self.root / "etc" / "plugstack.conf").write_text("")
        dbd = self.root / "etc" / "slurmdbd.conf"  # found next to slurm.conf (SLURM_CONF)
        dbd.write_text(
            "\n".join(
                [
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "DbdHost=localhost",
                    "DbdAddr=127.0.0.1",
                    f"DbdPort={self.dbd_port}",
                    "SlurmUser=root",
                    "StorageType=accounting_storage/mysql",
                    "StorageHost=127.0.0.1",
                    f"StoragePort={self.db_port}",
                    "StorageUser=root",
                    "StorageLoc=slurm_acct_db",
                    f"PidFile={run / 'slurmdbd.pid'}",
                    f"LogFile={log / 'slurmdbd.log'}",
                    "DebugLevel=info",
                    "",
                ]
            )
        )
        dbd.chmod(0o600)  # slurmdbd refuses a readable config (it may hold the database password)

    def _start_munge(self, deadline: float) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (self.root / "munge").chmod(0o755)  # munged: clients must be able to reach the socket
        self._start(
            "munged",
            [
                _which("munged"),
                "--foreground",
                "--force",  # root, and a socket outside /run/munge
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self.root / 'run' / 'munged.pid'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
            ],
            deadline,
            ready=self.munge_socket.exists,
        )

    def _start_database(self, deadline: float) -> None:
        data = self.root / "db"
        proc = subprocess.run(
            [
                _which("mariadb-install-db"),
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=max(deadline - time.monotonic(), 1),
        )
        if proc.returncode != 0:
            raise ClusterUnavailable(f"SLURM test cluster: mariadb-install-db failed: {proc.stderr[-1500:]}")
        self._start(
            "mariadbd",
            [
                _which("mariadbd"),
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                f"--socket={self.root / 'run' / 'mysqld.sock'}",
                f"--pid-file={self.root / 'run' / 'mysqld.pid'}",
                f"--log-error={self.root / 'log' / 'mariadbd.log'}",
                "--bind-address=127.0.0.1",
                f"--port={self.db_port}",
                "--skip-grant-tables",  # root without password: the database lives and dies with the test
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--skip-log-bin",
            ],
            deadline,
            ready=lambda: self._port_open(self.db_port),
        )

    def _start(self, name: str, argv: list, deadline: float, ready) -> None:
        log = self.root / "log" / f"{name}.out"
        self._logs[name] = log
        with open(log, "wb") as out:
            self._procs[name] = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        while time.monotonic() < deadline:
            if self._procs[name].poll() is not None:
                raise ClusterUnavailable(
                    f"SLURM test cluster: {name} exited ({self._procs[name].returncode}) while starting:\n"
                    f"{_tail(log)}\n{_tail(self.root / 'log' / f'{name}.log')}"
                )
            try:
                if ready():
                    return
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.3)
        raise ClusterUnavailable(
            f"SLURM test cluster: {name} not ready in time:\n{_tail(log)}\n{_tail(self.root / 'log' / f'{name}.log')}"
        )

    @staticmethod
    def _port_open(port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    def _node_idle(self) -> bool:
        out = self.command("sinfo", "-h", "-N", "-o", "%T", check=False).strip()
        return out.startswith("idle")


if __name__ == "__main__":
    import tempfile

    ensure_packages()
    with tempfile.TemporaryDirectory(prefix="slurm-") as tmp, LocalSlurmCluster(tmp) as cluster:
        print(f"export SLURM_CONF={cluster.conf}")
        print(cluster.command("sinfo"))
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        try:
            input("Enter stops the cluster ")
        except (KeyboardInterrupt, EOFError):
            pass
