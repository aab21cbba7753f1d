"""A real one-node Slurm (Debian's slurm-wlm + munge, installed by scripts/test.sh), started for the session.

Facts it relies on are in shared/reference/slurm-one-node.md: no cgroup.conf, ``cred_expire=10`` so that a requeued
job starts again after about 20 s, finished jobs visible to ``scontrol show job`` for ``MinJobAge``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SLURM_CONF = """\
ClusterName=npotest
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.log
ReturnToService=2
MinJobAge=600
KillWait=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _start_munge() -> None:
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)


class Slurm:
    """The running cluster: an environment for its clients, and job-state helpers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ, SLURM_CONF=str(root / "slurm.conf"))

    def run(self, *args: str) -> str:
        return subprocess.run(args, env=self.env, check=True, capture_output=True, text=True).stdout

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as key=value pairs (a finished job stays visible for MinJobAge)."""
        fields = {}
        for token in self.run("scontrol", "show", "job", "-o", job_id).split():
            key, _, value = token.partition("=")
            fields[key] = value
        return fields

    def wait(self, job_id: str, done: Callable[[dict[str, str]], bool], timeout: float) -> dict[str, str]:
        """Poll the job until ``done(fields)``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if done(job):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['JobState']} after {timeout:g} s")
            time.sleep(1)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    missing = [name for name in ("slurmctld", "slurmd", "sbatch", "munged") if shutil.which(name) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and slurm-wlm + munge (scripts/test.sh installs them); missing: {missing}")
    root = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    (root / "state").mkdir()
    (root / "spool").mkdir()
    (root / "slurm.conf").write_text(
        SLURM_CONF.format(host=host, root=root, cpus=os.cpu_count(), memory_mb=_memory_mb())
    )
    cluster = Slurm(root)
    _start_munge()
    conf = str(root / "slurm.conf")
    subprocess.run(["slurmctld", "-f", conf], env=cluster.env, check=True)
    subprocess.run(["slurmd", "-f", conf], env=cluster.env, check=True)
    deadline = time.monotonic() + 60
    while cluster.run("sinfo", "-h", "-o", "%t").strip() not in {"idle", "mix"}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Slurm node never became idle; see {root}/slurmd.log and slurmctld.log")
        time.sleep(0.5)
    yield cluster
    for daemon in ("slurmd", "slurmctld"):
        pid_file = root / f"{daemon}.pid"
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], check=False)
