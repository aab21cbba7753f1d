"""`python -m verifiers.suite`: every benchmark of a suite, one table per benchmark plus the average, resumable, and
finished runs side by side. The generator is a stand-in; tests/integration/test_exgrpo_cpu_e2e.py runs the command on
a real verl checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from data_prep.benchmarks import BENCHMARKS
from verifiers import suite
from verifiers.benchmarks import rule_for


def _rows(source: str, count: int, first: int = 0) -> list[dict]:
    """Questions ``first`` .. ``first + count - 1``; a row's id is its index."""
    return [
        {
            "data_source": source,
            "prompt": [{"role": "user", "content": f"What is {i} + 1?"}],
            "images": [],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(i + 1)},
            "extra_info": {"index": i},
        }
        for i in range(first, first + count)
    ]


@pytest.fixture
def data_dir(tmp_path: Path, write_rl_parquet) -> Path:
    root = tmp_path / "eval"
    (root / "alpha").mkdir(parents=True)
    write_rl_parquet(root / "alpha" / "alpha-00000.parquet", _rows("Alpha", 4)[:2])
    write_rl_parquet(root / "alpha" / "alpha-00001.parquet", _rows("Alpha", 4)[2:])
    write_rl_parquet(root / "beta.parquet", _rows("Beta", 2, first=10))
    return root


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text("benchmarks:\n  - {name: Alpha, data: alpha}\n  - {name: Beta, data: beta.parquet}\n")
    return path


class Answers:
    """Right on Alpha (ids 0-3) except its last question, wrong on Beta (ids 10, 11); records the ids it answers."""

    asked: list[str] = []

    def __init__(self, protocol, options) -> None:
        pass

    def generate(self, samples) -> list[str]:
        Answers.asked += [s.id for s in samples]
        return [f"\\boxed{{{s.fields['answer'] if int(s.id) < 3 else 'none'}}}" for s in samples]


def _run(data_dir: Path, suite_file: Path, out: Path, name: str = "NPO") -> int:
    args = ["run", "--model", str(data_dir), "--name", name, "--data-dir", str(data_dir), "--suite", str(suite_file)]
    return suite.main([*args, "--output", str(out), "--backend", "transformers", "--batch-size", "2"])


def test_one_table_per_benchmark_plus_the_average_in_the_papers_layout(data_dir, suite_file, tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "make_generator", Answers)
    monkeypatch.setattr(suite, "checkpoint_actor", lambda path: None)  # the data folder stands in for a model
    Answers.asked = []
    assert _run(data_dir, suite_file, tmp_path / "out") == 0
    run_dir = tmp_path / "out" / "NPO"
    assert sorted(Answers.asked, key=int) == ["0", "1", "2", "3", "10", "11"]
    with open(run_dir / "table.csv") as handle:
        assert list(csv.reader(handle)) == [["model", "Alpha", "Beta", "Avg"], ["NPO", "75.00", "0.00", "37.50"]]
    assert "| NPO | 75.00 | 0.00 | 37.50 |" in (run_dir / "table.md").read_text()
    details = (run_dir / "details.md").read_text()
    assert "| Alpha | 4 | 3 | 75.00 |" in details and "| Beta | 2 | 0 | 0.00 |" in details

    Answers.asked = []
    monkeypatch.setattr(suite, "make_generator", lambda *a: pytest.fail("a finished suite loads no model"))
    assert _run(data_dir, suite_file, tmp_path / "out") == 0
    assert (run_dir / "table.csv").read_text().splitlines()[1] == "NPO,75.00,0.00,37.50"


def test_a_run_stopped_partway_resumes_without_answering_again(data_dir, suite_file, tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "checkpoint_actor", lambda path: None)

    class StopsAtBeta(Answers):
        def generate(self, samples):
            if int(samples[0].id) >= 10:  # Beta
                raise KeyboardInterrupt
            return super().generate(samples)

    monkeypatch.setattr(suite, "make_generator", StopsAtBeta)
    Answers.asked = []
    with pytest.raises(KeyboardInterrupt):
        _run(data_dir, suite_file, tmp_path / "out")
    assert len(Answers.asked) == 4
    monkeypatch.setattr(suite, "make_generator", Answers)
    Answers.asked = []
    assert _run(data_dir, suite_file, tmp_path / "out") == 0
    assert Answers.asked == ["10", "11"], "Alpha's answers were kept"


def test_runs_side_by_side(data_dir, suite_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(suite, "checkpoint_actor", lambda path: None)
    monkeypatch.setattr(suite, "make_generator", Answers)
    _run(data_dir, suite_file, tmp_path / "out", "GRPO")
    short = tmp_path / "short.yaml"
    short.write_text("benchmarks:\n  - {name: Beta, data: beta.parquet}\n")
    _run(data_dir, short, tmp_path / "out", "NPO")
    capsys.readouterr()
    runs = [str(tmp_path / "out" / "GRPO"), str(tmp_path / "out" / "NPO")]
    assert suite.main(["compare", *runs, "--output", str(tmp_path / "both")]) == 0
    table = (tmp_path / "both" / "table.md").read_text().splitlines()
    assert table[0] == "| model | Alpha | Beta | Avg |"
    assert table[2:] == ["| GRPO | 75.00 | 0.00 | 37.50 |", "| NPO | – | 0.00 | 0.00 |"]
    assert suite.main(["compare", str(tmp_path)]) == 2
    assert "not a finished" in capsys.readouterr().err


def test_a_missing_benchmark_stops_the_run_before_a_model_loads(data_dir, suite_file, tmp_path, monkeypatch, capsys):
    (data_dir / "beta.parquet").unlink()
    monkeypatch.setattr(suite, "make_generator", lambda *a: pytest.fail("no model before every path is checked"))
    assert _run(data_dir, suite_file, tmp_path / "out") == 2
    assert "benchmark Beta: no parquet at" in capsys.readouterr().err


def test_suite_files_are_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmarks:\n  - {name: Alpha}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: benchmarks\[0\] needs 'name' and 'data'"):
        suite.load_suite(bad)
    bad.write_text("benchmarks:\n  - {name: A, data: a}\n  - {name: A, data: b}\n")
    with pytest.raises(ValueError, match="names repeat"):
        suite.load_suite(bad)


def test_the_papers_suite_names_benchmarks_the_project_converts_and_grades():
    entries = suite.load_suite(suite.DEFAULT_SUITE)
    assert len(entries) == 7 and all(e.status == "our choice" for e in entries)
    for entry in entries:
        assert entry.data in BENCHMARKS and BENCHMARKS[entry.data].name == entry.name, "data_prep's data_source"
        assert rule_for(entry.name).name != "default", f"{entry.name} has a matching rule"


def test_a_model_folder_a_checkpoint_and_neither(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert suite.checkpoint_actor(tmp_path / "hf") is None
    actor = tmp_path / "global_step_5" / "actor"
    actor.mkdir(parents=True)
    (actor / "model_world_size_2_rank_0.pt").write_bytes(b"")
    assert suite.checkpoint_actor(tmp_path / "global_step_5") == actor
    assert suite.checkpoint_actor(actor) == actor
    with pytest.raises(FileNotFoundError, match="neither a Hugging Face model folder"):
        suite.checkpoint_actor(tmp_path)
