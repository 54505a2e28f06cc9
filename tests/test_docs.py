"""The docs are reference: no machine-specific or temporary paths and no work-log wording.

Static (nothing runs): ``README.md``, every Markdown file under ``docs/`` and the committed measurement histories
under ``reports/`` are read line by line. An absolute path into a temporary or personal folder (``/tmp/``,
``/work/``, ``/home/``, ``/Users/``, ``C:\\Users\\``) names one machine, and work-log wording ("session 10",
"this session", "we tried") narrates how something was done instead of saying what is. Dated figures belong in a
committed report with the host and the command that reproduce them (``reports/*/history.md``), paths in it
relative to the repository root. Relative links between these files (and their ``#anchors``) must resolve, so
moving a section does not leave a dangling link.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_REPORTS = ("reports/README.md", "reports/history/measurements.md", "reports/quantization/history.md",
                     "reports/int8/measurements.md", "reports/rehearsal/measurements.md")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")

MACHINE_PATH = re.compile(r"(?<![\w.~/-])(?:/(?:tmp|work|home|Users|var/folders)/|[A-Za-z]:\\Users\\)")
WORK_LOG = re.compile(r"\bsessions? \d+\b|\b(?:this|earlier|previous|last|next) sessions?\b|\bend of (?:a|the) session\b"
                      r"|\b(?:today|yesterday),? (?:I|we)\b|\b(?:I|we) (?:tried|ran|found out)\b", re.IGNORECASE)
# Narrow exceptions: (file, the exact text that matched); a generic example that must name such a path goes here.
ALLOWED: set[tuple[str, str]] = set()


def documents(root: Path = ROOT) -> list[Path]:
    paths = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return paths + [root / p for p in COMMITTED_REPORTS if (root / p).is_file()]


def findings(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: kind 'text'`` for each machine path or work-log phrase in one Markdown file."""
    rel = path.relative_to(root).as_posix()
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for kind, pattern in (("machine path", MACHINE_PATH), ("work-log wording", WORK_LOG)):
            for match in pattern.finditer(line):
                if (rel, match.group(0)) not in ALLOWED:
                    found.append(f"{rel}:{number}: {kind} {match.group(0)!r}")
    return found


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (lower case, punctuation dropped, spaces to hyphens, -N repeats)."""
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        heading = None if fenced else re.match(r"#{1,6} (.+)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            seen[slug] = seen.get(slug, -1) + 1
    return {slug if n == 0 else f"{slug}-{n}" for slug, count in seen.items() for n in range(count + 1)}


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: target`` for each relative link whose file or ``#anchor`` does not exist."""
    broken = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
                broken.append(f"{path.relative_to(root).as_posix()}:{number}: {target}")
    return broken


def test_docs_name_no_machine_path_and_no_work_log():
    docs = documents()
    assert ROOT / "docs" / "quantization.md" in docs and ROOT / "reports/quantization/history.md" in docs
    assert [f for path in docs for f in findings(path)] == []


def test_the_check_can_fail(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("Run `sam3m4 pipeline --config configs/demo.yaml`; see https://example.org/home/x.\n")
    (tmp_path / "docs" / "a.md").write_text(
        "Script: `/tmp/sam3m4_bisect.py` on /work/cij/reports/x.json, or ~/src and C:\\Users\\me.\n"
        "Measured in session 10; this session we tried static activations.\n"
        "The pytest session's fixtures are built once per session; outputs go to outputs/tmp/.\n")
    got = [f for path in documents(tmp_path) for f in findings(path, tmp_path)]
    assert got == ["docs/a.md:1: machine path '/tmp/'", "docs/a.md:1: machine path '/work/'",
                   "docs/a.md:1: machine path 'C:\\\\Users\\\\'", "docs/a.md:2: work-log wording 'session 10'",
                   "docs/a.md:2: work-log wording 'this session'", "docs/a.md:2: work-log wording 'we tried'"]


def test_relative_links_resolve():
    assert [b for path in documents() for b in broken_links(path)] == []


def test_a_moved_section_is_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Top\n\n## Run it (`make demo`)\n\n## Run it (`make demo`)\n")
    (tmp_path / "docs" / "a.md").write_text(
        "[ok](../README.md#run-it-make-demo) [second](../README.md#run-it-make-demo-1) [web](https://x.org/y)\n"
        "[gone](../README.md#stage-4-on-the-demo) [missing](../reports/history.md) [self](#nothing)\n")
    assert [b for path in documents(tmp_path) for b in broken_links(path, tmp_path)] == [
        "docs/a.md:2: ../README.md#stage-4-on-the-demo", "docs/a.md:2: ../reports/history.md", "docs/a.md:2: #nothing"]
