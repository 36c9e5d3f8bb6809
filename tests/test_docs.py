"""Every document the repository cites lives inside it: no citation of the science brief or the
notes kept outside the checkout, every relative Markdown link resolves, and every repository
path named in code or docs exists."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCOPE_DIRS = ("src", "workflow", "docs", "tests", "benchmarks", "config", "profiles")
SCOPE_FILES = ("README.md", "Makefile", "Snakefile")
# Spelled in pieces, so that this file does not cite them itself.
OUTSIDE = [
    (re.compile(re.escape("SCIENCE" + ".md")), "cites the science brief kept outside the "
     "repository; cite docs/science/ instead"),
    (re.compile(r"(?:\.\./)+" + "shared" + r"\b"), "names a path outside the repository"),
    (re.compile(re.escape("/work/" + "shared")), "names a path outside the repository"),
]
# A path to a file the repository itself provides, e.g. tests/test_train.py or
# docs/science/tasks.md (config/ and profiles/ are left out: examples name files a user creates).
REPO_PATH = re.compile(r"(?<![\w./<{-])((?:src|tests|docs|workflow|benchmarks)/[\w./-]*\w"
                       r"\.(?:py|md|sh|smk|rst|ya?ml|png|toml))\b")
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
MD_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def tracked_files() -> list[Path]:
    """The tracked files in scope (git ls-files; a plain walk where there is no git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *SCOPE_DIRS, *SCOPE_FILES],
                             cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        paths = [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        paths = [p for d in SCOPE_DIRS for p in (ROOT / d).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
        paths += [ROOT / f for f in SCOPE_FILES if (ROOT / f).is_file()]
    return sorted(p for p in paths if p.is_file())


def text_of(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None  # a figure or other binary file
    return None if "\0" in text else text


def texts() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): t for p in tracked_files() if (t := text_of(p)) is not None}


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def test_the_scope_is_found():
    found = texts()
    for name in ("README.md", "Makefile", "src/rnnbench/train.py", "docs/DESIGN.md",
                 "docs/science/README.md", "workflow/report/workflow.rst"):
        assert name in found, name


def test_no_file_cites_a_document_outside_the_repository():
    problems = [f"{name}:{line_of(text, m.start())}: {m.group(0)!r} {why}"
                for name, text in texts().items()
                for pattern, why in OUTSIDE for m in pattern.finditer(text)]
    assert not problems, "\n".join(problems)


def test_repository_paths_named_in_files_exist():
    """A path like tests/test_numba_backend.py in a docstring must name a real file."""
    problems = []
    this_file = str(Path(__file__).resolve().relative_to(ROOT))  # its examples name no files
    for name, text in texts().items():
        if name == this_file:
            continue
        for m in REPO_PATH.finditer(text):
            if not (ROOT / m.group(1)).exists():
                problems.append(f"{name}:{line_of(text, m.start())}: {m.group(1)} does not exist")
    assert not problems, "\n".join(problems)


def markdown_targets(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline link, image and reference definition outside code."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731 - keep offsets and lines
    prose = INLINE_CODE.sub(blank, FENCE.sub(blank, text))
    found = [(m.start(1), m.group(1)) for m in MD_LINK.finditer(prose)]
    found += [(m.start(1), m.group(1)) for m in MD_REFERENCE.finditer(prose)]
    return [(line_of(prose, i), target) for i, target in sorted(found)]


def is_relative(target: str) -> bool:
    return not (re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "//")))


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_markdown_links_point_to_files_in_the_repository(path):
    problems = []
    for line, target in markdown_targets(path.read_text(encoding="utf-8")):
        if not is_relative(target):
            continue
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if not file_part:
            continue
        resolved = (path.parent / file_part).resolve()
        if ROOT.resolve() not in resolved.parents and resolved != ROOT.resolve():
            problems.append(f"line {line}: {target} leaves the repository")
        elif not resolved.exists():
            problems.append(f"line {line}: {target} does not exist")
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_link_checker_sees_links_images_and_references_but_not_code():
    text = ("See [a](docs/a.md#x) and ![fig](figures/f.png \"t\").\n"
            "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n[ref]: ../b.md\n"
            "[web](https://example.org/x.md) [anchor](#here)\n")
    targets = [t for _, t in markdown_targets(text)]
    assert targets == ["docs/a.md#x", "figures/f.png", "../b.md", "https://example.org/x.md",
                       "#here"]
    assert [t for t in targets if is_relative(t)] == ["docs/a.md#x", "figures/f.png", "../b.md"]


def test_the_outside_patterns_match_what_they_should():
    assert any(p.search("see " + "SCIENCE" + ".md §3") for p, _ in OUTSIDE)
    assert any(p.search("see ../../" + "shared/SLURM.md") for p, _ in OUTSIDE)
    assert not any(p.search("docs/science/tasks.md, a shared helper") for p, _ in OUTSIDE)
    cited = REPO_PATH.search("(tests/test_numba_backend.py)")
    assert cited.group(1) == "tests/test_numba_backend.py"
    assert not REPO_PATH.search("results/<study>/runs/x.parquet, workflow/report/<name>.rst")
