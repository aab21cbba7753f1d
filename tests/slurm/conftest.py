"""A real multi-node Slurm on this machine: each node a network namespace with its own address and hostname.

One bridge in the root namespace and a veth into each namespace (a private 10.x range with no route out), a munged
of its own whose socket every namespace reaches through the shared filesystem, slurmctld in a ``ctl`` namespace and
one slurmd per node namespace. Job steps run in their node's namespace, so Ray started by ``scripts/run_npo.sh``
inside a job gets one real node per Slurm node, each at its own address. Clients (``sbatch``, ``scontrol``) run in
the root namespace and reach the controller through the bridge.

The controller schedules every 2 s (Slurm's default is 60 s, which would leave a job submitted while the previous
one's nodes are still completing pending for up to a minute). Every daemon runs in the foreground as a child of this
process, so its PID is known; :meth:`SlurmCluster.stop` ends them, anything left in the namespaces (job steps, Ray),
and removes the namespaces and the bridge, and reports whatever it could not stop. Needs root, slurm-wlm, munge and
iproute2 (``scripts/test.sh`` installs them).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SLURM_CONF = """\
ClusterName={name}
SlurmctldHost=ctl({ctl_addr})
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.log
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdTimeout=20
MinJobAge=600
KillWait=5
SchedulerParameters=sched_interval=2
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
{nodes}
PartitionName=debug Nodes={node_names} Default=YES MaxTime=INFINITE State=UP
"""
NODE_CPUS, NODE_MEMORY_MB = 2, 10_000
LOCK = Path("/tmp/npo-test-netns.lock")


class SlurmCluster:
    """``nodes`` Slurm nodes named node1..nodeN, at 10.<60+k>.0.11, .12, ...; the controller at .10."""

    def __init__(self, nodes: int) -> None:
        # not under pytest's tmp_path (mode 0700): munged runs as the munge user and must reach its folder
        self.root = Path(tempfile.mkdtemp(prefix="npo-slurm-"))
        self.root.chmod(0o755)
        self.nodes = [f"node{i}" for i in range(1, nodes + 1)]
        self.procs: dict[str, subprocess.Popen] = {}
        self.namespaces: list[str] = []
        self.bridge = ""
        self.env = dict(os.environ, SLURM_CONF=str(self.root / "slurm.conf"))

    # --- addresses and namespaces ------------------------------------------------------------------------------

    def address(self, node: str) -> str:
        return f"{self.subnet}.{10 if node == 'ctl' else 10 + int(node.removeprefix('node'))}"

    def netns(self, node: str) -> str:
        return f"{self.name}{node}"

    def in_node(self, node: str, *command: str) -> list[str]:
        """``command`` run in ``node``'s network namespace."""
        return ["nsenter", f"--net=/run/netns/{self.netns(node)}", *command]

    def _claim_network(self) -> None:
        """A bridge name and subnet no other cluster on this machine uses (tests may run two at once)."""
        with LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for k in range(1, 60):
                if not Path(f"/sys/class/net/npobr{k}").exists():
                    break
            else:
                raise RuntimeError("no free test bridge name npobr1..npobr59")
            self.name, self.bridge, self.subnet = f"npo{k}", f"npobr{k}", f"10.{60 + k}.0"
            _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for node in ["ctl", *self.nodes]:
            ns, veth = self.netns(node), f"v{self.name}{node}"[:15]
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(node)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "eth0", "up")

    # --- daemons -----------------------------------------------------------------------------------------------

    def _daemon(self, name: str, command: list[str]) -> None:
        log = (self.root / "log" / f"{name}.stdout").open("w")
        self.procs[name] = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def _in_host(self, node: str, command: str) -> list[str]:
        """``command`` as a daemon of ``node``: its network namespace and its own hostname (exec keeps the PID)."""
        return self.in_node(node, "unshare", "--uts", "sh", "-c", f"hostname {node} && exec {command}")

    def start(self) -> SlurmCluster:
        for folder in ("state", "spool", "run", "log", "munge"):
            (self.root / folder).mkdir(exist_ok=True)
        shutil.chown(self.root / "munge", "munge", "munge")
        self._claim_network()
        node_lines = "\n".join(
            f"NodeName={n} NodeAddr={self.address(n)} CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} State=UNKNOWN"
            for n in self.nodes
        )
        names = ",".join(self.nodes)
        conf = SLURM_CONF.format(
            name=self.name, ctl_addr=self.address("ctl"), root=self.root, nodes=node_lines, node_names=names
        )
        (self.root / "slurm.conf").write_text(conf)
        munge = self.root / "munge"
        self._daemon(
            "munged",
            ["setpriv", "--reuid=munge", "--regid=munge", "--clear-groups", "munged", "--foreground",
             f"--socket={munge}/munge.socket", f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log",
             f"--seed-file={munge}/munged.seed"],
        )  # fmt: skip
        _wait_for(lambda: (munge / "munge.socket").exists(), 30, f"munged never made its socket; see {munge}")
        conf_path = self.root / "slurm.conf"
        self._daemon("slurmctld", self._in_host("ctl", f"slurmctld -D -f {conf_path}"))
        for node in self.nodes:
            self._daemon(f"slurmd-{node}", self._in_host(node, f"slurmd -D -f {conf_path} -N {node}"))
        _wait_for(
            lambda: self.states() == {n: "idle" for n in self.nodes},
            60,
            f"the Slurm nodes never became idle; see {self.root}/log",
        )
        return self

    def kill_node(self, node: str) -> None:
        """What a node failure looks like to the rest: its slurmd and its Ray daemons die at once (SIGKILL)."""
        for pid in _netns_pids(self.netns(node)):
            if any(name in _cmdline(pid) for name in ("slurmd", "raylet", "gcs_server")):
                _kill(pid)
        self.procs[f"slurmd-{node}"].wait(timeout=10)

    def restart_slurmd(self, node: str) -> None:
        """Bring a killed node back (ReturnToService=2 makes it usable again once it registers)."""
        conf_path = self.root / "slurm.conf"
        self._daemon(f"slurmd-{node}", self._in_host(node, f"slurmd -D -f {conf_path} -N {node}"))
        _wait_for(lambda: self.states().get(node) == "idle", 60, f"{node} never came back to idle")

    def processes(self, node: str) -> list[str]:
        """The command lines of every process in ``node``'s namespace."""
        return [_cmdline(pid) for pid in _netns_pids(self.netns(node))]

    def states(self) -> dict[str, str]:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env, capture_output=True, text=True)
        return dict(line.split() for line in proc.stdout.splitlines() if line.strip())

    def leftovers(self) -> list[str]:
        """Processes still running that this cluster started: its daemons, or anything in its namespaces."""
        alive = [f"{name} (pid {p.pid})" for name, p in self.procs.items() if p.poll() is None]
        for ns in self.namespaces:
            for pid in _netns_pids(ns):
                alive.append(f"pid {pid} in {ns}: {_cmdline(pid)}")
        return alive

    def stop(self) -> None:
        """Stop everything this cluster started, remove its namespaces and bridge; raise if anything survived."""
        for name in [n for n in self.procs if n.startswith("slurmd")] + ["slurmctld", "munged"]:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for ns in self.namespaces:  # job steps and Ray processes: only this cluster's jobs run in its namespaces
            for pid in _netns_pids(ns):
                _kill(pid)
        _wait_for(lambda: not any(_netns_pids(ns) for ns in self.namespaces), 20, "processes survived SIGKILL")
        survivors = self.leftovers()
        for ns in self.namespaces:
            _ip("netns", "del", ns, check=False)
        if self.bridge:
            _ip("link", "del", self.bridge, check=False)
        if survivors:
            raise RuntimeError(f"still running after the cluster stopped: {survivors} (logs in {self.root})")
        shutil.rmtree(self.root, ignore_errors=True)

    # --- jobs --------------------------------------------------------------------------------------------------

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


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def _netns_pids(ns: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(pid) for pid in proc.stdout.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_for(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.25)


def cluster_requirements() -> list[str]:
    """What this machine lacks to run the test cluster (empty: it can)."""
    tools = ("slurmctld", "slurmd", "sbatch", "munged", "ip", "nsenter", "unshare", "setpriv")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


@pytest.fixture(scope="module")
def cluster():
    """A 2-node cluster for the module."""
    missing = cluster_requirements()
    if missing:
        pytest.skip(f"the multi-node Slurm tests need {missing} (scripts/test.sh installs them)")
    slurm = SlurmCluster(2)
    try:
        yield slurm.start()
    finally:
        slurm.stop()


@pytest.fixture
def cluster_factory():
    """``cluster_factory(nodes)``: a :class:`SlurmCluster`, not started (for tests of the cluster itself)."""
    missing = cluster_requirements()
    if missing:
        pytest.skip(f"needs {missing} (scripts/test.sh installs them)")
    return SlurmCluster
