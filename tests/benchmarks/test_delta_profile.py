"""benchmarks/delta_profile.py's reading of two probe tables: the Δ* at each anchor and which way it moved."""

from benchmarks.delta_profile import markdown


def profile(s_by_delta: dict[int, float], chosen: int | None) -> list[dict[str, float]]:
    rows = []
    for delta, s in s_by_delta.items():
        row = {"delta": float(delta), "q": s, "v": 1.0, "s": s, "chosen": float(delta == chosen)}
        row |= {"failing_prompts": 5.0, "prompts": 64.0}
        rows.append(row | {f"{n}_{side}": row[n] for n in "qvs" for side in ("low", "high")})
    return rows


def test_the_table_says_the_optimum_moved_later_when_the_late_anchor_picks_a_larger_delta():
    text = markdown({1: profile({1: 0.2, 2: 0.3, 4: 0.1}, 2), 10: profile({1: 0.1, 2: 0.2, 4: 0.4}, 4)}, 4, 8, 1.0)
    assert "Δ* is 2 at T = 1 and 4 at T = 10: the optimum moves later, and at each anchor" in text
    assert text.count("←") == 2
    assert text.count("| 5 / 64 |") == 6, "each row says how many prompts its Q rests on"


def test_the_table_says_so_when_the_optimum_does_not_move_or_an_anchor_has_none():
    same = markdown({1: profile({1: 0.3, 2: 0.1}, 1), 10: profile({1: 0.3, 2: 0.1}, 1)}, 4, 8, 1.0)
    assert "the optimum moves nowhere" in same
    none = markdown({1: profile({1: 0.0, 2: 0.0}, None), 10: profile({1: 0.3, 2: 0.1}, 1)}, 4, 8, 1.0)
    assert "one anchor has no Δ*" in none and "←" in none


def test_a_move_inside_overlapping_intervals_is_called_noise():
    early, late = profile({1: 0.2, 2: 0.3}, 2), profile({1: 0.3, 2: 0.25}, 1)
    for row in late:
        row["s_low"], row["s_high"] = 0.0, 0.8
    text = markdown({1: early, 10: late}, 4, 8, 1.0)
    assert "the optimum moves earlier, within the noise over prompts: at T = 10, S is 0.250 [0.000, 0.800]" in text
    assert "at T = 1," not in text, "the early anchor's intervals are disjoint"
