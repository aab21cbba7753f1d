"""How far the trainer's V is from the full-vocabulary V, and whether it picks the same Δ*.

    python benchmarks/v_estimator_accuracy.py [--vocab 32768] [--positions 2048] [--k 16] [--draws 16] [--seeds 5]

Four families of synthetic next-token distributions (seeded), each a current policy and guides at Δ = 10, 20, 30,
40 that move away from it as Δ grows:

* ``close``: the guide's logits are the current ones plus Gaussian noise of scale 0.012·Δ (V from about 1.01 to 1.3);
* ``far``: the same with noise of scale 0.04·Δ (V up to about 12);
* ``sharpened``: the guide's logits are the current ones times 1 + 0.012·Δ (a near future that is more confident);
* ``peaked``: a nearly flat current policy and a guide with one token raised by 0.45·Δ per position (V up to ~10⁴).

For each guide, V is computed over the same positions by: the full distributions (``full``, float64, the reference);
the trainer's estimator (``trainer``: top-k, exact tail mass, tail draws; ``npo_ext.topk`` + ``npo_ext.signals``);
its lower bound alone (``bound``: the tail lumped); the previous estimator (``lumped_1_minus``: the tail as one minus
the summed float32 top-k probabilities, dropped below 1e-6); and the sampled-token form (``sampled``: w² of one token
drawn from the guide per position). Q(Δ) = 1 − exp(−Δ/15) for every family, so S = Q / V has an interior optimum
when V grows fast enough. Reported per family and estimator: how often its Δ* equals the full V's over the seeds, and
its relative error |V / V_full − 1| (mean and max over seeds and Δ). The distributions are ours, not a model's: the
figures show how the estimators behave on these shapes, not on a trained policy.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch

from npo_ext.signals import Chi2TopK, TopKScores, chi2_second_moment
from npo_ext.topk import guide_topk, log_probs_at

ROOT = Path(__file__).resolve().parents[1]
DELTAS = (10, 20, 30, 40)
ESTIMATORS = ("trainer", "bound", "lumped_1_minus", "sampled")


def q_of(delta: int) -> float:
    return 1.0 - math.exp(-delta / 15)


def families(vocab: int, positions: int, seed: int) -> dict[str, tuple[torch.Tensor, Callable[[int], torch.Tensor]]]:
    """Per family: the current policy's logits and a function Δ -> the guide's logits."""
    gen = torch.Generator().manual_seed(seed)
    base = 2.5 * torch.randn(positions, vocab, generator=gen)
    noise = torch.randn(positions, vocab, generator=gen)
    flat = 0.3 * torch.randn(positions, vocab, generator=gen)
    peak = torch.randint(0, vocab, (positions,), generator=gen)

    def peaked(delta: int) -> torch.Tensor:
        logits = flat.clone()
        logits[torch.arange(positions), peak] += 0.45 * delta
        return logits

    return {
        "close": (base, lambda d: base + 0.012 * d * noise),
        "far": (base, lambda d: base + 0.04 * d * noise),
        "sharpened": (base, lambda d: base * (1 + 0.012 * d)),
        "peaked": (flat, peaked),
    }


def estimates(current: torch.Tensor, guide: torch.Tensor, k: int, draws: int, seed: int) -> dict[str, float]:
    """V of one guide against the current policy by every estimator (logits ``(positions, vocab)``)."""
    gen = torch.Generator().manual_seed(seed)
    kept = guide_topk(guide, k, draws, generator=gen)
    cur_values, cur_tail = log_probs_at(current, torch.cat([kept.ids, kept.draw_ids], -1), exclude=k)
    trainer = Chi2TopK()
    mask = torch.ones(cur_tail.shape)
    trainer.add(
        TopKScores(cur_values[:, :k], cur_values[:, k:], cur_tail),
        TopKScores(kept.log_probs, kept.draw_log_probs, kept.tail),
        mask,
    )
    _, bound_sum, tokens = trainer.rows.sum(0)
    cur_lp, guide_lp = torch.log_softmax(current.float(), -1), torch.log_softmax(guide.float(), -1)
    head = torch.exp(2.0 * cur_values[:, :k].double() - kept.log_probs.double()).sum(-1)
    cur_rest = (1.0 - cur_values[:, :k].double().exp().sum(-1)).clamp_min(0.0)
    guide_rest = 1.0 - kept.log_probs.double().exp().sum(-1)
    previous = head + torch.where(guide_rest > 1e-6, cur_rest.square() / guide_rest.clamp_min(1e-6), 0.0)
    sampled = torch.multinomial(guide_lp.double().exp(), 1, generator=gen)
    w_sq = torch.exp(2.0 * (cur_lp.gather(-1, sampled) - guide_lp.gather(-1, sampled)).double())
    return {
        "full": chi2_second_moment(cur_lp, guide_lp),
        "trainer": trainer.value,
        "bound": float(bound_sum / tokens),
        "lumped_1_minus": float(previous.mean()),
        "sampled": float(w_sq.mean()),
    }


def delta_star(values: dict[int, float]) -> int:
    return max(DELTAS, key=lambda d: q_of(d) / values[d])


def measure(vocab: int, positions: int, k: int, draws: int, seeds: int) -> dict:
    """Per family: Δ* agreement and relative errors of every estimator over ``seeds`` seeds, and seed 0's table."""
    report: dict = {}
    for seed in range(seeds):
        for name, (current, guide_of) in families(vocab, positions, seed).items():
            by_delta = {d: estimates(current, guide_of(d), k, draws, 1000 * seed + d) for d in DELTAS}
            family = report.setdefault(name, {"table": None, **{e: {"agree": 0, "errors": []} for e in ESTIMATORS}})
            if seed == 0:
                family["table"] = {d: by_delta[d] for d in DELTAS}
            reference = delta_star({d: by_delta[d]["full"] for d in DELTAS})
            family.setdefault("delta_star_full", []).append(reference)
            for estimator in ESTIMATORS:
                values = {d: by_delta[d][estimator] for d in DELTAS}
                family[estimator]["agree"] += int(delta_star(values) == reference)
                family[estimator]["errors"] += [abs(values[d] / by_delta[d]["full"] - 1.0) for d in DELTAS]
                family[estimator]["min_v"] = min(family[estimator].get("min_v", math.inf), *values.values())
    return report


def markdown(report: dict, seeds: int) -> str:
    lines = [
        f"| family | estimator | same Δ* as full V ({seeds} seeds) | mean rel. error | max rel. error | min V |",
        "|---|---|---|---|---|---|",
    ]
    for name, family in report.items():
        for estimator in ESTIMATORS:
            row = family[estimator]
            errors = row["errors"]
            lines.append(
                f"| {name} | {estimator} | {row['agree']}/{seeds} | {sum(errors) / len(errors):.3f} | "
                f"{max(errors):.3f} | {row['min_v']:.4g} |"
            )
    lines += [
        "",
        "| family | Δ | full V | trainer | bound | lumped_1_minus | sampled |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, family in report.items():
        for delta, row in family["table"].items():
            values = " | ".join(f"{row[key]:.4g}" for key in ("full", *ESTIMATORS))
            lines.append(f"| {name} | {delta} | {values} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--positions", type=int, default=2048, help="guide tokens V is averaged over")
    parser.add_argument("--k", type=int, default=16, help="top-k ids kept per token (npo.v_topk)")
    parser.add_argument("--draws", type=int, default=16, help="tail draws per token (npo.v_tail_draws)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_v_accuracy" / "results.json")
    args = parser.parse_args()
    report = measure(args.vocab, args.positions, args.k, args.draws, args.seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "report": report}, indent=1))
    print(markdown(report, args.seeds))


if __name__ == "__main__":
    main()
