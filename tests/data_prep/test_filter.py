"""The difficulty filter: pass rates from k samples, the kept range, and resuming after a kill."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_prep import difficulty
from data_prep.cli import main
from data_prep.schema import OUTPUT_SCHEMA

ROWS = 10
K = 4
ROOT = Path(__file__).resolve().parents[2]


class Canned:
    """Row i (answer i + 1) gets (i % 5) correct answers out of k, so pass rates cover 0 .. 1; no model."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def generate(self, samples: list) -> list[str]:
        self.calls.append([s.id for s in samples])
        seen: Counter[int] = Counter()
        answers = []
        for sample in samples:
            i = int(sample.id)
            answers.append(f"<answer>{i + 1 if seen[i] < i % 5 else -1}</answer>")
            seen[i] += 1
        return answers


class Killed(Canned):
    """Dies on its third call, like a job killed mid-run."""

    def generate(self, samples: list) -> list[str]:
        if len(self.calls) == 2:
            raise KeyboardInterrupt("killed")
        return super().generate(samples)


@pytest.fixture
def converted(kit, tmp_path: Path) -> Path:
    kit.write_shard(tmp_path / "raw" / "s.parquet", [kit.mmfr_row(i, pass_rate=None) for i in range(ROWS)])
    out = tmp_path / "converted"
    assert main(["mmfinereason", "--input", str(tmp_path / "raw"), "--output", str(out), "--val-size", "3"]) == 0
    return out


def _filter(converted: Path, out: Path, *extra: str) -> int:
    args = ["filter", "--input", str(converted), "--output", str(out), "--model", "unused", "--k", str(K)]
    return main([*args, "--backend", "transformers", "--batch-size", "2", *extra])


def _use(monkeypatch, generator) -> None:
    monkeypatch.setattr(difficulty, "make_generator", lambda config, data, options: generator)


def _scores(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / difficulty.SCORES_FILE).read_text().splitlines()]


def _kept(out: Path) -> dict[int, tuple[str, float]]:
    rows = [r for p in sorted(out.glob("*-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert len(rows) == len({r["extra_info"]["index"] for r in rows}), "no row twice"
    return {r["extra_info"]["index"]: (r["extra_info"]["split"], r["extra_info"]["pass_rate"]) for r in rows}


def test_pass_rates_are_scored_and_the_range_is_kept(converted: Path, tmp_path: Path, monkeypatch) -> None:
    generator = Canned()
    _use(monkeypatch, generator)
    out = tmp_path / "filtered"
    assert _filter(converted, out, "--pass-rate", "0,0.5") == 0
    assert {s["index"]: s["pass_rate"] for s in _scores(out)} == {i: min(i % 5, K) / K for i in range(ROWS)}
    kept = _kept(out)
    assert sorted(kept) == [i for i in range(ROWS) if i % 5 <= 2]
    assert all(rate == (i % 5) / K for i, (_, rate) in kept.items())
    assert {split for split, _ in kept.values()} <= {"train", "val"}
    assert all(pq.read_schema(p).equals(OUTPUT_SCHEMA) for p in out.glob("*-*.parquet"))
    assert all(len(call) == 2 * K for call in generator.calls), "k samples of each question per batch"
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["scoring"]["scored"] == ROWS and summary["filtered"] == {"pass_rate_out_of_range": 4}


def test_a_killed_run_resumes_without_rescoring_or_duplicating(converted: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "filtered"
    _use(monkeypatch, Killed())
    with pytest.raises(KeyboardInterrupt):
        _filter(converted, out, "--pass-rate", "0,1")
    assert len(_scores(out)) == 4, "two batches of two were scored before the kill"
    done = {s["index"] for s in _scores(out)}
    with open(out / difficulty.SCORES_FILE, "a") as log:
        log.write('{"index": 99, "id": "cut sh')  # a kill in the middle of a line

    generator = Canned()
    _use(monkeypatch, generator)
    assert _filter(converted, out, "--pass-rate", "0,1") == 0
    asked = Counter(int(i) for call in generator.calls for i in call)
    assert set(asked) == set(range(ROWS)) - done, "rows scored before the kill are not generated again"
    assert set(asked.values()) == {K}
    scores = _scores(out)
    assert sorted(s["index"] for s in scores) == list(range(ROWS)), "one score line per row, the cut one dropped"
    assert sorted(_kept(out)) == list(range(ROWS))
    assert json.loads((out / "manifest.json").read_text())["summary"]["scoring"]["resumed"] == len(done)


STALLING_RUN = """
import sys, time
from data_prep import difficulty
from data_prep.cli import main

class Stalls:
    calls = 0

    def generate(self, samples):
        Stalls.calls += 1
        if Stalls.calls > 2:
            time.sleep(600)  # killed here
        return ["<answer>-1</answer>"] * len(samples)

difficulty.make_generator = lambda config, data, options: Stalls()
sys.exit(main(sys.argv[1:]))
"""


def test_a_sigkilled_process_resumes_where_it_stopped(converted: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "filtered"
    args = ["filter", "--input", str(converted), "--output", str(out), "--model", "unused", "--k", str(K)]
    args += ["--backend", "transformers", "--batch-size", "2", "--pass-rate", "0,1"]
    process = subprocess.Popen([sys.executable, "-c", STALLING_RUN, *args], cwd=ROOT, stderr=subprocess.DEVNULL)
    log = out / difficulty.SCORES_FILE
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("\n") >= 4) and process.poll() is None:
        assert time.monotonic() < deadline, "the stalling run never scored its first two batches"
        time.sleep(0.05)
    process.kill()  # SIGKILL: no cleanup, no flush beyond what the filter already synced
    process.wait()
    done = {s["index"] for s in _scores(out)}
    assert len(done) == 4

    generator = Canned()
    _use(monkeypatch, generator)
    assert _filter(converted, out, "--pass-rate", "0,1") == 0
    assert {int(i) for call in generator.calls for i in call} == set(range(ROWS)) - done
    assert sorted(s["index"] for s in _scores(out)) == list(range(ROWS))
    assert sorted(_kept(out)) == list(range(ROWS))


def test_a_finished_run_reruns_without_a_model_and_other_settings_are_refused(
    converted: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "filtered"
    _use(monkeypatch, Canned())
    assert _filter(converted, out) == 0
    first = _kept(out)

    def no_model(config, data, options):
        raise AssertionError("nothing is left to score")

    monkeypatch.setattr(difficulty, "make_generator", no_model)
    assert _filter(converted, out) == 0 and _kept(out) == first
    assert sorted(first) == [i for i in range(ROWS) if i % 5 == 0], "the default range is the paper's pass rate 0"
    assert _filter(converted, out, "--temperature", "0.7") == 2
    assert "other settings" in capsys.readouterr().err
    assert _filter(converted, converted) == 2


@pytest.mark.slow
def test_the_tiny_model_scores_on_cpu_through_transformers(converted: Path, tiny_vl: Path, tmp_path: Path) -> None:
    out = tmp_path / "filtered"
    args = ["filter", "--input", str(converted), "--output", str(out), "--model", str(tiny_vl), "--k", "2"]
    assert main([*args, "--max-new-tokens", "3", "--backend", "transformers", "--pass-rate", "0,1"]) == 0
    assert [s["k"] for s in _scores(out)] == [2] * ROWS
    assert {s["pass_rate"] for s in _scores(out)} <= {0.0, 0.5, 1.0}
    assert len(_kept(out)) == ROWS
