"""The test cluster itself stops everything it started: daemons, job processes, namespaces and the bridge."""

import subprocess
from pathlib import Path


def test_a_stopped_cluster_leaves_no_process_namespace_or_bridge_behind(cluster_factory, tmp_path):
    cluster = cluster_factory(1)
    try:
        cluster.start()
        # a job whose step outlives the batch script's wait would be left behind by a careless teardown
        job = cluster.run("sbatch", "--parsable", f"--output={tmp_path}/job.out", "--wrap", "srun sleep 600").strip()
        cluster.wait(job, lambda j: j["JobState"] == "RUNNING", timeout=60)
        pids = {name: proc.pid for name, proc in cluster.procs.items()}
        namespaces = list(cluster.namespaces)
    finally:
        cluster.stop()
    assert cluster.leftovers() == []
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids.values()), pids
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed.split() for ns in namespaces)
    assert not Path(f"/sys/class/net/{cluster.bridge}").exists()
    assert not cluster.root.exists()
