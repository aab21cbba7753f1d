"""Convert the publishers' own annotation files, in their repositories' layouts, and count what comes out.

    .venv/bin/python benchmarks/data_prep_layouts.py [--mirror /work/.mirror] [--workdir DIR] [--code ROOT]

Reads the benchmark repositories from local git mirrors (`fetch` in the tool library puts them under
`/work/.mirror/OWNER+NAME/repo`): MATH-V (`data/test.jsonl`, `data/testmini.jsonl` and its `images/`, all real),
We-Math (`data/testmini.json`), MathVerse (`data/testmini_text_only.json`) and MathVista (`data/testmini.json`
with `data/query.json`). We-Math and MathVista ship their images separately, so a small PNG is written at every
path their annotations name: the layouts and the rows are real, those images are stand-ins. Each conversion runs
`python -m data_prep benchmark` in a subprocess from `--code` (default: this checkout), so an older checkout can be
measured on the same files. Prints one line per file: rows in, rows out, quarantined and noted by reason, and the
publisher's row count.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Layout:
    """One annotation file in its repository, the benchmark it feeds, and the publisher's row count."""

    repo: str
    files: tuple[str, ...]
    benchmark: str
    expected: int
    stand_in_images: bool  # the repository does not ship the images its annotations name


LAYOUTS = (
    Layout("mathllm+MATH-V", ("data/test.jsonl",), "mathvision", 3040, False),
    Layout("mathllm+MATH-V", ("data/testmini.jsonl",), "mathvision", 304, False),
    Layout("We-Math+We-Math", ("data/testmini.json",), "wemath", 1740, True),
    Layout("ZrrSkywalker+MathVerse", ("data/testmini_text_only.json",), "mathverse", 788, False),
    Layout("lupantech+MathVista", ("data/testmini.json", "data/query.json"), "mathvista", 1000, True),
)


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(repo), *args], check=True, capture_output=True).stdout


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "gray").save(buffer, format="PNG")
    return buffer.getvalue()


def _image_paths(data_file: Path) -> list[str]:
    """The image paths a We-Math or MathVista annotation file names."""
    data = json.loads(data_file.read_text(encoding="utf-8"))
    rows = data.values() if isinstance(data, dict) else data
    return [str(row.get("image_path") or row.get("image")) for row in rows if row.get("image_path") or row.get("image")]


def build(layout: Layout, mirror: Path, into: Path) -> Path:
    """The repository's layout under `into`: the annotation files, and its images (real, or stand-ins)."""
    repo = mirror / layout.repo / "repo"
    for name in layout.files:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_bytes(_git(repo, "show", f"HEAD:{name}"))
    data_file = into / layout.files[0]
    if layout.stand_in_images:
        png = _png()
        for path in _image_paths(data_file):
            (data_file.parent / path).parent.mkdir(parents=True, exist_ok=True)
            (data_file.parent / path).write_bytes(png)
    elif layout.benchmark == "mathvision" and not (into / "images").exists():
        archive = _git(repo, "archive", "--format=tar", "HEAD", "images")
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return data_file


def convert(code: Path, benchmark: str, data_file: Path, out: Path) -> dict:
    """Run the conversion from checkout `code`; its manifest summary, or the exit status when it wrote none."""
    command = [sys.executable, "-m", "data_prep", "benchmark", benchmark, "--input", str(data_file)]
    done = subprocess.run([*command, "--output", str(out)], cwd=code, capture_output=True, text=True)
    manifest = out / "manifest.json"
    if not manifest.exists():
        return {"exit": done.returncode, "error": done.stderr.strip().splitlines()[-1:]}
    return {"exit": done.returncode, **json.loads(manifest.read_text())["summary"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose data_prep converts")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="layouts-"))
    print(f"code: {args.code}  work: {work}")
    for layout in LAYOUTS:
        if not (args.mirror / layout.repo / "repo").exists():
            print(f"{layout.repo}: no mirror, skipped")
            continue
        tree = work / layout.repo
        data_file = build(layout, args.mirror, tree)
        name = f"{layout.repo}/{layout.files[0]}"
        summary = convert(args.code, layout.benchmark, data_file, work / "out" / name.replace("/", "_"))
        if "rows_in" not in summary:
            print(f"{name:<45} exit {summary['exit']}: {summary['error']}")
            continue
        out, rows_in = summary["total_out"], summary["rows_in"]
        extra = {**summary["quarantined"], **{f"noted {k}": v for k, v in summary.get("noted", {}).items()}}
        images = " (stand-in images)" if layout.stand_in_images else ""
        print(f"{name:<45} {rows_in:>5} in  {out:>5} out  publisher {layout.expected:>5}  exit {summary['exit']}"
              f"  {extra}{images}")  # fmt: skip


if __name__ == "__main__":
    main()
