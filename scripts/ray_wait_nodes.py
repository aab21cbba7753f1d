"""Wait until every node of the allocation has joined the Ray cluster with its GPUs, at its address; name the ones
that did not.

    python scripts/ray_wait_nodes.py --address HEAD_IP:PORT --nodes node1[=ADDR] node2[=ADDR] ... \
        [--gpus-per-node G] [--timeout S]

``scripts/run_npo.sh`` starts each node's Ray with a custom resource ``npo_node:<slurm node name>`` so that a node is
recognised by its Slurm name even when several share an address. With ``=ADDR`` the node must have registered at
that address (a node that picked another interface would make its peers dial the wrong network). Exit status 0 when
all are in; 1 with a message naming the missing nodes (or those with too few GPUs, or at another address) after the
timeout.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

NODE_RESOURCE = "npo_node:"
POLL_S = 2.0


def registered(nodes: list[dict]) -> dict[str, tuple[float, str]]:
    """Slurm node name -> (GPUs, address), for the alive Ray nodes that carry a ``npo_node:`` resource."""
    out = {}
    for node in nodes:
        if not node.get("Alive"):
            continue
        for key in node["Resources"]:
            if key.startswith(NODE_RESOURCE):
                out[key.removeprefix(NODE_RESOURCE)] = (node["Resources"].get("GPU", 0.0), node["NodeManagerAddress"])
    return out


def parse_expected(specs: list[str]) -> dict[str, str | None]:
    """``name`` or ``name=address`` -> {name: address or None}."""
    return {name: address or None for name, _, address in (spec.partition("=") for spec in specs)}


def problems(expected: dict[str, str | None], joined: dict[str, tuple[float, str]], gpus_per_node: int) -> list[str]:
    missing = [name for name in expected if name not in joined]
    present = [name for name in expected if name in joined]
    short = [f"{name} ({joined[name][0]:g} GPUs)" for name in present if joined[name][0] < gpus_per_node]
    elsewhere = [
        f"{name} ({joined[name][1]}, expected {expected[name]})"
        for name in present
        if expected[name] is not None and joined[name][1] != expected[name]
    ]
    out = []
    if missing:
        out.append(f"not joined: {', '.join(missing)}")
    if short:
        out.append(f"fewer than {gpus_per_node} GPUs: {', '.join(short)}")
    if elsewhere:
        out.append(f"at another address: {', '.join(elsewhere)}")
    return out


def wait_for_head(address: str, deadline: float) -> bool:
    """True once the head accepts a TCP connection on its GCS port, False at the deadline."""
    host, _, port = address.rpartition(":")
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return True
        except OSError:
            time.sleep(POLL_S)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the Ray head, HEAD_IP:PORT")
    parser.add_argument("--nodes", nargs="+", required=True, help="Slurm node names expected to join, NAME[=ADDRESS]")
    parser.add_argument("--gpus-per-node", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up")
    args = parser.parse_args()

    import ray

    expected = parse_expected(args.nodes)
    deadline = time.monotonic() + args.timeout
    if not wait_for_head(args.address, deadline):  # ray.init would retry a missing head for many minutes
        print(f"[run_npo] error: the Ray head at {args.address} did not open its port in {args.timeout:g} s",
              file=sys.stderr)  # fmt: skip
        return 1
    ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
    try:
        while True:
            joined = registered(ray.nodes())
            found = problems(expected, joined, args.gpus_per_node)
            if not found:
                where = " ".join(f"{name}={joined[name][1]}" for name in expected)
                print(
                    f"[run_npo] all {len(expected)} Ray nodes joined ({args.gpus_per_node} GPUs each): {where}",
                    flush=True,
                )
                return 0
            if time.monotonic() > deadline:
                print(
                    f"[run_npo] error: after {args.timeout:g} s the Ray cluster at {args.address} is incomplete; "
                    f"{'; '.join(found)}. See each node's ray-<node>-<job>.log in the log folder.",
                    file=sys.stderr,
                )
                return 1
            time.sleep(POLL_S)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
