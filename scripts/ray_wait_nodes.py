"""Wait until every node of the allocation has joined the Ray cluster with its GPUs; name the ones that did not.

    python scripts/ray_wait_nodes.py --address HEAD_IP:PORT --nodes node1 node2 ... [--gpus-per-node G] [--timeout S]

``scripts/run_npo.sh`` starts each node's Ray with a custom resource ``npo_node:<slurm node name>`` so that a node is
recognised by its Slurm name even when several share an address. Exit status 0 when all are in; 1 with a message
naming the missing nodes (or those with too few GPUs) after the timeout.
"""

from __future__ import annotations

import argparse
import sys
import time

NODE_RESOURCE = "npo_node:"
POLL_S = 2.0


def registered(nodes: list[dict]) -> dict[str, float]:
    """Slurm node name -> GPUs, for the alive Ray nodes that carry a ``npo_node:`` resource."""
    out = {}
    for node in nodes:
        if not node.get("Alive"):
            continue
        for key in node["Resources"]:
            if key.startswith(NODE_RESOURCE):
                out[key.removeprefix(NODE_RESOURCE)] = node["Resources"].get("GPU", 0.0)
    return out


def problems(expected: list[str], joined: dict[str, float], gpus_per_node: int) -> list[str]:
    missing = [name for name in expected if name not in joined]
    short = [f"{name} ({joined[name]:g} GPUs)" for name in expected if name in joined and joined[name] < gpus_per_node]
    out = []
    if missing:
        out.append(f"not joined: {', '.join(missing)}")
    if short:
        out.append(f"fewer than {gpus_per_node} GPUs: {', '.join(short)}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the Ray head, HEAD_IP:PORT")
    parser.add_argument("--nodes", nargs="+", required=True, help="Slurm node names expected to join")
    parser.add_argument("--gpus-per-node", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up")
    args = parser.parse_args()

    import ray

    ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            found = problems(args.nodes, registered(ray.nodes()), args.gpus_per_node)
            if not found:
                print(f"[run_npo] all {len(args.nodes)} Ray nodes joined ({args.gpus_per_node} GPUs each)", flush=True)
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
