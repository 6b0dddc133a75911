"""A real one-node SLURM cluster for the tests: munged, slurmctld and slurmd on this machine.

Debian's `slurmctld`, `slurmd`, `slurm-client` and `munge` packages (installed by .ci/run) run
as root with everything private to one temporary folder: the munge key and socket, the
config (named by SLURM_CONF), state, spool and logs, and free ports, so nothing under /etc
or /run is touched and a second cluster could run beside it. The daemons run in the
foreground as children of the test process and are stopped, by their own ids, at the end.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
PR_SET_PDEATHSIG = 1  # prctl(2)
CLIENTS = ("sbatch", "sinfo", "squeue", "scontrol", "scancel", "srun")


def missing_reason() -> str | None:
    """Why a cluster cannot start here, or None."""
    absent = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]
    if absent:
        return (
            f"SLURM is not installed ({', '.join(absent)} missing): "
            "apt-get install -y slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "the test SLURM cluster runs its daemons as root (SlurmUser=root)"
    return None


def stop_with_parent() -> None:
    """The daemon gets SIGTERM when the test process dies, even if it is killed outright."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_memory_mb() -> int:
    """About 80% of this machine's memory, so jobs never push it into swap."""
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    return int(total_kb / 1024 * 0.8)


@dataclass
class SlurmCluster:
    """The running cluster: `env` holds SLURM_CONF for every client command and job."""

    root: Path
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *command: str, check: bool = True) -> str:
        """A SLURM client command against this cluster; its stdout."""
        result = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr}{self.logs()}")
        return result.stdout

    def logs(self) -> str:
        return "".join(
            f"\n--- {log.name}\n{log.read_text()[-3000:]}"
            for log in sorted(self.root.glob("*.log"))
        )

    def write_config(self) -> None:
        munge_socket = self.root / "munge" / "munge.socket"
        for name in ("state", "spool"):
            (self.root / name).mkdir(mode=0o755)
        self.conf.write_text(
            f"""\
ClusterName=storygen-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job starts again cred_expire + 1 s after it ended; 5 s is SLURM's least
AuthInfo=socket={munge_socket},cred_expire=5
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.root / "slurmctld.log"}
SlurmdLogFile={self.root / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
JobRequeue=1
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={node_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def start_munge(self) -> None:
        """munged with its own random key and socket (munge-owned keys are for system munged)."""
        directory = self.root / "munge"
        directory.mkdir(mode=0o700)
        key = directory / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.start(
            "munged",
            "--foreground",
            "--force",  # root, and a key outside /etc/munge
            f"--socket={directory / 'munge.socket'}",
            f"--key-file={key}",
            f"--pid-file={directory / 'munged.pid'}",
            f"--seed-file={directory / 'munged.seed'}",
            f"--log-file={self.root / 'munged.log'}",
        )
        self.wait_for(lambda: (directory / "munge.socket").exists(), "munged's socket")

    def start(self, *command: str) -> None:
        log = (self.root / f"{command[0]}.out").open("w")
        self.processes.append(
            subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=stop_with_parent,
            )
        )

    def wait_for(self, ready, what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}{self.logs()}")
            time.sleep(0.5)

    def node_idle(self) -> bool:
        state = self.run("sinfo", "--noheader", "--Node", "--format=%T", check=False).strip()
        return state == "idle"

    def up(self) -> SlurmCluster:
        self.write_config()
        self.start_munge()
        self.start("slurmctld", "-D", "-i")  # -i: ignore state left by an earlier cluster
        self.start("slurmd", "-D", "-N", self.node)
        self.wait_for(self.node_idle, "the node to be idle in sinfo")
        return self

    def down(self) -> None:
        """Cancel every job, then stop the daemons: slurmd, slurmctld, munged, each by its id."""
        try:
            if self.processes[1:] and self.processes[1].poll() is None:
                self.run("scancel", "--full", f"--user={os.getuid()}", check=False)
                self.wait_for(lambda: not self.jobs(), "jobs to end", timeout_s=60)
        finally:
            self.stop_daemons()

    def stop_daemons(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def jobs(self) -> list[str]:
        return self.run("squeue", "--noheader", "--format=%i %T", check=False).split("\n")[:-1]


@pytest.fixture(scope="session", name="slurm_cluster")
def start_slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster.up()
    finally:
        cluster.down()
