"""`verifiers` on third-party material, side by side with math-verify and mathruler in one run.

    python benchmarks/verifiers_real.py convert --mathvista GIT --mathv GIT --suites GIT [GIT ...] [--out DIR]
    python benchmarks/verifiers_real.py score [--out DIR] [--per-file 300] [--seed 0] [--sample-disagreements 60]

Material (none of it is in this repository; point the script at local clones or bare git directories):

* **MathVista testmini** (lupantech/MathVista, CC BY-SA 4.0, test use only): `results/*/output_*.json`, real
  responses of 8 vision-language models and 6 text-only LLM runs, each row labelled `true_false` by the benchmark's
  own judge (GPT-4 answer extraction, then exact match). The program-of-thought runs (`*_code*`, whose answer is the
  output of executing the response) and the random baselines are left out. Rows whose extraction is neither an
  option, a letter nor "(X)" got their label from the nearest option by edit distance: they are kept but flagged
  `label_reliable=false` and reported separately.
* **MATH-Vision test** (mathllm/MATH-V, MIT): `outputs/**.jsonl`, 15 model runs, each row labelled `correct` by the
  benchmark's rule-based judge; the gold answer and options are joined from `data/test.jsonl` by `id`.
* **Grader test suites** (expected True/False per gold/prediction pair), read from the test files with `ast`:
  huggingface/Math-Verify `tests/`, MARIO-Math-Reasoning/MARIO_EVAL, hendrycks/math, NVIDIA/NeMo-Skills.

`convert` writes `responses.jsonl` and `grader_cases.jsonl`; `score` samples up to `--per-file` rows of each model
run (seeded), scores every row with the three graders (resumable: `scores.jsonl`), prints the agreement tables and
writes a sample of disagreements for hand-checking. Graders see the whole response; `verifiers` also gets the
benchmark's choices and precision, as its reward path does. math-verify is `verify(parse(gold), parse(response))`;
mathruler is `grade_answer(extract_boxed_content(response), gold)`, as verl's and EasyR1's rewards call them (the
whole string when it has no box).
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifiers import Item, verify_batch  # noqa: E402
from verifiers.extract import extract_answer  # noqa: E402

MATHVISTA_RUNS = {
    "bard/output_bard.json": "lmm",
    "idefics/output_idefics_9b_instruct.json": "lmm",
    "instruct_blip2/output_instruct_blip2_vicuna_13b.json": "lmm",
    "llama_adapter_v2/output_llama_adapter_v2.json": "lmm",
    "llava/output_llava_llama_2_13b.json": "lmm",
    "llavar/output_llavar.json": "lmm",
    "minigpt4/output_minigpt4_llama2.json": "lmm",
    "mplugowl/output_mplugowl_7b_ft.json": "lmm",
    "gpt4/output_gpt4.json": "llm",
    "gpt4/output_gpt4_2shot_solution.json": "llm",
    "chatgpt/output_chatgpt.json": "llm",
    "chatgpt/output_chatgpt_2shot_solution.json": "llm",
    "claude/output_claude.json": "llm",
    "claude/output_claude_2shot_solution.json": "llm",
}
SUITE_FILES = {
    "Math-Verify": [
        "tests/test_all.py",
        "tests/test_numina_cases.py",
        "tests/test_open_thoughts.py",
        "tests/test_yujianll.py",
        "tests/test_boxed.py",
        "tests/test_strict.py",
    ],  # fmt: skip
    "MARIO_EVAL": ["math_evaluation/tests/test_is_equiv.py"],
    "hendrycks-math": ["modeling/math_equivalence_test.py"],
    "NeMo-Skills": ["tests/test_math_equal.py"],
}
LETTERS = "ABCDEFGHIJ"


# --- reading the material ------------------------------------------------------------------------------------
class Source:
    """A local clone or a bare git directory, read at HEAD."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.bare = not (self.path / ".git").exists() and (self.path / "HEAD").is_file()

    def read(self, name: str) -> str:
        if not self.bare:
            return (self.path / name).read_text(encoding="utf-8")
        return subprocess.run(
            ["git", f"--git-dir={self.path}", "show", f"HEAD:{name}"], capture_output=True, check=True, text=True
        ).stdout

    def names(self, prefix: str) -> list[str]:
        if not self.bare:
            return sorted(str(p.relative_to(self.path)) for p in (self.path / prefix).rglob("*") if p.is_file())
        out = subprocess.run(
            ["git", f"--git-dir={self.path}", "ls-tree", "-r", "-z", "--name-only", "HEAD", prefix],
            capture_output=True,
            check=True,
        ).stdout.decode()
        return sorted(n for n in out.split("\0") if n)


def mathvista_rows(source: Source) -> list[dict]:
    rows = []
    for name, kind in MATHVISTA_RUNS.items():
        for pid, r in json.loads(source.read(f"results/{name}")).items():
            if r.get("true_false") is None or not str(r.get("response") or "").strip():
                continue  # 2 unlabelled rows; InstructBLIP's empty responses (its label came from another field)
            choices = r.get("choices") or None
            extraction = str(r.get("extraction") or "").strip()
            reliable = not choices or extraction in choices or extraction.strip("()") in LETTERS[: len(choices)]
            rows.append(
                {
                    "source": f"MathVista/{kind}",
                    "run": name,
                    "id": pid,
                    "response": r["response"],
                    "gold": str(r["answer"]),
                    "choices": choices,
                    "precision": r.get("precision"),
                    "benchmark": "MathVista",
                    "label": bool(r["true_false"]),
                    "label_reliable": reliable,
                }
            )
    return rows


def mathv_rows(source: Source) -> list[dict]:
    gold = {g["id"]: g for g in map(json.loads, source.read("data/test.jsonl").splitlines())}
    rows = []
    for name in source.names("outputs"):
        if not name.endswith(".jsonl") or "Random" in name:
            continue
        try:
            lines = source.read(name).splitlines()
        except subprocess.CalledProcessError:
            continue  # files over 4 MiB are absent from a snapshot
        kind = "cot" if "CoT" in name else "direct"
        for o in map(json.loads, lines):
            g = gold[o["id"]]
            options = g["options"] or None
            rows.append(
                {
                    "source": f"MATH-Vision/{kind}",
                    "run": name,
                    "id": o["id"],
                    "response": o["response"],
                    "gold": g["answer"],
                    "choices": None if options == list(LETTERS[: len(options or [])]) else options,
                    "precision": None,
                    "benchmark": "MathVision",
                    "label": bool(o["correct"]),
                    "label_reliable": True,
                }
            )
    return rows


def _literal(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def parametrized_cases(text: str) -> list[tuple[str, str, bool]]:
    """(gold, pred, expected) from `@pytest.mark.parametrize("gold,pred,...expected|result", [...])` lists."""
    cases = []
    for node in ast.walk(ast.parse(text)):
        for deco in getattr(node, "decorator_list", []):
            if not (isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize"):
                continue
            names = [n.strip() for n in str(_literal(deco.args[0]) or "").split(",")]
            elements = getattr(deco.args[1], "elts", [])
            values = [v for v in map(_literal, elements) if v is not None]  # a non-literal case is skipped
            if isinstance(values, list) and names == ["output_pair"]:  # NeMo-Skills: one list per expectation
                expected = "incorrect" not in node.name
                cases += [(str(x), str(y), expected) for a, b in values for x, y in ((a, b), (b, a))]
                continue
            if "gold" not in names or "pred" not in names:
                continue
            key = "expected" if "expected" in names else "result"
            for row in values:
                fields = dict(zip(names, row, strict=False))
                cases.append((str(fields["gold"]), str(fields["pred"]), bool(fields[key])))
    return cases


def unittest_cases(text: str) -> list[tuple[str, str, bool]]:
    """(gold, pred, expected) from `test_in = ...; test_out = ...; self.assertTrue|False(f(test_in, test_out))`."""
    cases = []
    for func in (n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef)):
        env: dict[str, object] = {}
        for stmt in ast.walk(func):
            if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                env[stmt.targets[0].id] = _literal(stmt.value)
            elif isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Tuple):
                pairs = env.get(getattr(stmt.iter, "id", ""), []) or []
                verdict = next((c for c in ast.walk(stmt) if isinstance(c, ast.Call) and "assert" in _name(c)), None)
                if verdict is not None:
                    cases += [(str(a), str(b), _name(verdict) == "assertTrue") for a, b in pairs]
            elif isinstance(stmt, ast.Call) and _name(stmt) in ("assertTrue", "assertFalse") and stmt.args:
                inner = stmt.args[0]
                if isinstance(inner, ast.Call) and len(inner.args) >= 2:
                    a, b = (env.get(x.id) if isinstance(x, ast.Name) else _literal(x) for x in inner.args[:2])
                    if isinstance(a, str) and isinstance(b, str):
                        cases.append((a, b, _name(stmt) == "assertTrue"))
    return cases


def _name(call: ast.Call) -> str:
    return getattr(call.func, "attr", getattr(call.func, "id", ""))


def grader_cases(sources: list[Source]) -> list[dict]:
    rows = []
    for source in sources:
        for suite, files in SUITE_FILES.items():
            for name in files:
                try:
                    text = source.read(name)
                except (FileNotFoundError, subprocess.CalledProcessError):
                    continue
                found = parametrized_cases(text) or unittest_cases(text)
                rows += [
                    {"source": suite, "run": name, "id": f"{name}:{i}", "gold": g, "pred": p, "label": e}
                    for i, (g, p, e) in enumerate(found)
                ]
    return rows


# --- scoring ---------------------------------------------------------------------------------------------------
def peers():
    from math_verify import parse, verify
    from mathruler.grader import extract_boxed_content, grade_answer

    def math_verify(response: str, gold: str) -> bool:
        try:
            return bool(verify(parse(gold), parse(response)))
        except Exception:
            return False

    def mathruler(response: str, gold: str) -> bool:
        boxed = extract_boxed_content(response)
        try:
            return bool(grade_answer(response.strip("$ ") if boxed == "None" else boxed, gold))
        except Exception:
            return False

    return {"math-verify": math_verify, "mathruler": mathruler}


def gold_answer(text: str) -> str:
    """Suite golds are sometimes whole solutions; reduce them with the same extraction as responses."""
    extraction = extract_answer(text)
    return extraction.span if extraction.source in ("boxed", "answer_tag", "answer_is") else text


def score_rows(rows: list[dict], out: Path) -> list[dict]:
    done = {}
    if out.exists():
        done = {(r["source"], r["run"], r["id"]): r for r in map(json.loads, out.read_text().splitlines())}
    todo = [r for r in rows if (r["source"], r["run"], r["id"]) not in done]
    graders = peers()
    with out.open("a") as sink:
        for start in tqdm(range(0, len(todo), 256), desc=f"scoring {out.name}", unit="batch"):
            batch = todo[start : start + 256]
            items = [
                Item.from_fields(r["response"], r["gold"], r.get("benchmark"), r)
                if "response" in r
                else Item(r["pred"], gold_answer(r["gold"]))
                for r in batch
            ]
            ours = verify_batch(items)
            for r, item, result in zip(batch, items, ours, strict=True):
                prediction = r.get("response", r.get("pred"))
                gold = item.answer if isinstance(item.answer, str) else r["gold"]
                scored = {**r, "verifiers": result.correct, "reason": result.reason, "extracted": result.extracted}
                scored.update({name: grade(prediction, gold) for name, grade in graders.items()})
                sink.write(json.dumps(scored, ensure_ascii=False) + "\n")
                done[(r["source"], r["run"], r["id"])] = scored
    return [done[(r["source"], r["run"], r["id"])] for r in rows]


def agreement_table(scored: list[dict], title: str) -> str:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in scored:
        groups[r["source"] + ("" if r.get("label_reliable", True) else " (nearest-option labels)")].append(r)
    graders = ["verifiers", "math-verify", "mathruler"]
    lines = [
        f"### {title}",
        "",
        "| source | n | labelled right | " + " | ".join(graders) + " | verifiers: wrong accepts / wrong rejects |",
        "|---|---|---|" + "---|" * len(graders) + "---|",
    ]
    for name in sorted(groups) + ["all"]:
        rows = scored if name == "all" else groups[name]
        agree = [sum(r[g] == r["label"] for r in rows) / len(rows) for g in graders]
        accepts = sum(r["verifiers"] and not r["label"] for r in rows)
        rejects = sum(r["label"] and not r["verifiers"] for r in rows)
        lines.append(
            f"| {name} | {len(rows)} | {sum(r['label'] for r in rows) / len(rows):.1%} | "
            + " | ".join(f"{a:.1%}" for a in agree)
            + f" | {accepts} / {rejects} |"
        )
    return "\n".join(lines)


def sample(rows: list[dict], per_file: int, seed: int) -> list[dict]:
    by_run: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by_run[(r["source"], r["run"])].append(r)
    rng = random.Random(seed)
    picked = []
    for key in sorted(by_run):
        group = by_run[key]
        picked += group if per_file <= 0 or len(group) <= per_file else rng.sample(group, per_file)
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert")
    convert.add_argument("--mathvista", required=True)
    convert.add_argument("--mathv", required=True)
    convert.add_argument("--suites", nargs="+", required=True, help="Math-Verify, MARIO_EVAL, hendrycks/math, ...")
    score = sub.add_parser("score")
    score.add_argument("--per-file", type=int, default=300, help="rows sampled per model run; 0 = all")
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--sample-disagreements", type=int, default=60)
    for p in (convert, score):
        p.add_argument("--out", type=Path, default=Path("outputs/verifiers_real"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    if args.command == "convert":
        responses = mathvista_rows(Source(args.mathvista)) + mathv_rows(Source(args.mathv))
        cases = grader_cases([Source(s) for s in args.suites])
        for name, rows in (("responses.jsonl", responses), ("grader_cases.jsonl", cases)):
            (args.out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            print(f"{name}: {len(rows)} rows")
        return

    responses = [json.loads(line) for line in (args.out / "responses.jsonl").read_text().splitlines()]
    cases = [json.loads(line) for line in (args.out / "grader_cases.jsonl").read_text().splitlines()]
    scored = score_rows(sample(responses, args.per_file, args.seed), args.out / "scores.jsonl")
    suites = score_rows(cases, args.out / "suite_scores.jsonl")
    print(agreement_table(scored, f"Model responses with benchmark labels ({args.per_file or 'all'} per run)"))
    print()
    print(agreement_table(suites, "Grader test suites (expected verdicts)"))
    rng = random.Random(args.seed)
    disagreements = [r for r in scored if r["verifiers"] != r["label"] and r["label_reliable"]]
    picked = rng.sample(disagreements, min(args.sample_disagreements, len(disagreements)))
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in picked)
    (args.out / "disagreements_sample.jsonl").write_text("".join(lines))
    print(f"\n{len(disagreements)} disagreements with reliable labels; {len(picked)} sampled for hand-checking")


if __name__ == "__main__":
    main()
