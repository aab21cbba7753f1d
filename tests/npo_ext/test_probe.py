"""The probe (``npo_ext.probe``) and its command (``python -m recipes.npo.probe``) with a fake backend: the order of
work, the arithmetic, the CSV and the PNG.

The verl backend (recipes/npo/probe_backend.py) runs on real demo checkpoints in
tests/integration/test_probe_cpu_e2e.py.
"""

import csv
import math

import numpy as np
import pytest

from npo_ext import probe as probe_algorithm
from recipes.npo import probe as probe_command

PROMPTS = 4


class FakeBackend:
    """Policies are checkpoint steps. θ_10 fails prompts 0-2 and solves prompt 3; θ_{10+Δ} solves min(Δ, 3) of the
    failed prompts in every sample; V = 1 + 0.05 Δ² (the distance between sampler and scorer)."""

    def __init__(self):
        self.step = None
        self.calls = []

    def load(self, step):
        self.step = step
        self.calls.append(("load", step))

    def sample(self, k, samples_dir):
        self.calls.append(("sample", self.step))
        if samples_dir is not None:
            samples_dir.mkdir(parents=True)
            (samples_dir / "policy").write_text(f"{self.step} {k}")
        solved = 0 if self.step == 10 else min(self.step - 10, 3)
        return np.array([k if i < solved else 0 for i in range(PROMPTS - 1)] + [k])

    def variance_rows(self, samples_dir):
        """k responses per prompt of 2 tokens each; prompt i's responses are 1 + i/10 times as costly as the mean."""
        sampler, k = map(int, (samples_dir / "policy").read_text().split())
        v = 1.0 + 0.05 * (sampler - self.step) ** 2
        scale = np.repeat(1.0 + (np.arange(PROMPTS) - (PROMPTS - 1) / 2) / 10, k)
        return np.stack([2 * v * scale, np.full(PROMPTS * k, 2.0), np.full(PROMPTS * k, 2.0)], -1)

    def external_correct(self, source, where):
        """The teacher solves prompts 0, 1 and 3; the experience file holds prompts 2 and 3."""
        self.calls.append((source, where))
        return np.array([1, 1, 0, 1]) if source == "teacher" else np.array([0, 0, 1, 1])


def test_probe_orders_the_passes_and_computes_q_v_s(tmp_path):
    backend = FakeBackend()
    result = probe_algorithm.probe(backend, anchor=10, deltas=[1, 2, 4], k=4, q_k=4, work=tmp_path)
    rows, bands = result.rows, result.bands
    assert (result.failing_prompts, result.prompts) == (3, 4)
    assert [(r.delta, r.q) for r in rows] == [(1, 1 / 3), (2, 2 / 3), (4, 1.0)]
    assert [r.v for r in rows] == pytest.approx([1.05, 1.2, 1.8])
    # over prompts: Δ=1 solves one of the three failed prompts, so Q spans 0 to 1 across resamples; Δ=4 solves all;
    # V varies with which prompts are drawn (their responses cost 0.85 to 1.15 times the mean)
    assert bands[1]["q"] == (0.0, 1.0) and bands[4]["q"] == (1.0, 1.0)
    for row in rows:
        low, high = bands[row.delta]["v"]
        assert low < row.v < high and low >= 0.85 * row.v and high <= 1.15 * row.v
        assert bands[row.delta]["s"][0] <= row.s <= bands[row.delta]["s"][1]
    # θ_T first, then each candidate samples, then θ_T scores every candidate's samples
    assert backend.calls[:2] == [("load", 10), ("sample", 10)]
    assert backend.calls[-1] == ("load", 10)
    assert [c for c in backend.calls if c[0] == "sample"] == [("sample", s) for s in (10, 11, 12, 14)]


def test_external_sources_are_measured_on_the_prompts_the_anchor_fails(tmp_path):
    backend = FakeBackend()
    external = [("teacher", "teacher_response"), ("experience_file", "/runs/e.jsonl")]
    result = probe_algorithm.probe(backend, anchor=10, deltas=[1], k=4, q_k=4, work=tmp_path, external=external)
    rows, sources = result.rows, result.sources
    # θ_10 fails prompts 0-2: the teacher solves 2 of them, the file holds 1 of them (prompt 3 is not failed)
    assert [(s.source, s.q) for s in sources] == [
        ("near_future (Δ=1)", rows[0].q), ("teacher (teacher_response)", 2 / 3), ("experience_file (e.jsonl)", 1 / 3)
    ]  # fmt: skip
    assert sources[0].v == rows[0].v and sources[0].s == pytest.approx(rows[0].s)
    assert all(math.isnan(s.v) and math.isnan(s.s) for s in sources[1:]), "no V without the source's distribution"
    assert backend.calls[2:4] == external, "measured while θ_T is loaded, right after its samples"


def make_run(tmp_path, steps):
    for step in steps:
        (tmp_path / "ckpt" / f"global_step_{step}" / "actor").mkdir(parents=True)
    prompts = tmp_path / "prompts.parquet"
    prompts.write_bytes(b"")
    return ["--checkpoints", str(tmp_path / "ckpt"), "--prompts", str(prompts), "--out", str(tmp_path / "out")]


def fake(args, overrides):
    return FakeBackend()


def test_main_writes_csv_and_png_with_the_interior_optimum_marked(tmp_path, capsys):
    args = make_run(tmp_path, [10, 11, 12, 14])
    rows = probe_command.main([*args, "--anchor", "10", "--deltas", "4,1,2", "--k", "4"], create_backend=fake)
    # S = 0.317, 0.556, 0.556: the tie goes to the smaller Δ
    with open(tmp_path / "out" / "probe.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["delta"]) for r in table] == [1, 2, 4]
    assert [int(r["chosen"]) for r in table] == [0, 1, 0]
    assert all(math.isfinite(float(r["s"])) for r in table)
    assert float(table[1]["s"]) == pytest.approx(rows[1].q / rows[1].v)
    png = (tmp_path / "out" / "probe.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "delta*=2" in capsys.readouterr().out


def test_main_puts_the_sources_side_by_side(tmp_path, capsys):
    args = make_run(tmp_path, [10, 11, 12])
    experience = tmp_path / "e.jsonl"
    experience.write_text("")
    probe_command.main(
        [*args, "--anchor", "10", "--deltas", "1,2", "--k", "4",
         "--teacher-field", "teacher_response", "--experience-file", str(experience)],
        create_backend=fake,
    )  # fmt: skip
    with open(tmp_path / "out" / "sources.csv") as f:
        table = {r["source"]: r for r in csv.DictReader(f)}
    assert list(table) == ["near_future (Δ=1)", "near_future (Δ=2)", "teacher (teacher_response)",
                           "experience_file (e.jsonl)"]  # fmt: skip
    assert float(table["teacher (teacher_response)"]["q"]) == pytest.approx(2 / 3)
    assert table["teacher (teacher_response)"]["v"] == "nan"
    assert (tmp_path / "out" / "sources.png").read_bytes().startswith(b"\x89PNG")
    assert "source=teacher (teacher_response) Q=0.6667 V=n/a" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--anchor", "10", "--deltas", "1,3"], "no checkpoint for step 13"),
        (["--anchor", "10", "--deltas", "0"], "at least one distance >= 1"),
        (["--anchor", "10", "--deltas", "one"], "comma-separated integers"),
        (["--anchor", "10", "--deltas", "1", "--experience-file", "/nowhere.jsonl"], "no such file /nowhere.jsonl"),
    ],
)
def test_bad_arguments_name_what_is_missing(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        probe_command.main([*make_run(tmp_path, [10, 11]), *extra], create_backend=fake)
    assert message in capsys.readouterr().err
