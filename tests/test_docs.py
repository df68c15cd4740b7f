"""The user documentation is current and whole: the generated case reference matches the schemas, every link
and every cited document exists, and no page narrates development history."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = [ROOT / f for f in out.split()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the folders that cite documents
        files = [
            p
            for d in ("hybrid", "cases", "tests", "benchmarks", "datasets", "training", "tools", "docs")
            for p in (ROOT / d).rglob("*")
        ]
        files += [ROOT / "README.md"]
    suffixes = {".py", ".md", ".toml", ".sh", ".cff", ".txt"}
    return [p for p in files if p.is_file() and p.suffix in suffixes]


def test_case_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "tools" / "update_readme.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    page = (ROOT / "docs" / "case-reference.md").read_text()
    assert page == tool.render(), "regenerate with: python tools/update_readme.py"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    text = page.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    missing = [t for t in local if t and not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to files the repository lacks: {missing}"


def test_every_cited_document_exists() -> None:
    missing = []
    for path in _tracked_text_files():
        for doc in set(re.findall(r"\bdocs/[\w.-]+\.(?:md|png)", path.read_text(errors="replace"))):
            if not (ROOT / doc).exists():
                missing.append(f"{path.relative_to(ROOT)} cites {doc}")
        if re.search(r"\b(DESIGN|PHYSICS)\.md\b", path.read_text(errors="replace")) and path.name != "test_docs.py":
            missing.append(f"{path.relative_to(ROOT)} cites DESIGN.md/PHYSICS.md (not in the repository)")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_pages_describe_the_project_as_it_is(page: Path) -> None:
    """User pages hold current figures; the history of earlier attempts belongs in the CHANGELOG, if anywhere."""
    history = [
        line
        for line in page.read_text().splitlines()
        if re.search(r"\b(stop|session) [0-9]+\b|[Ee]arlier: |previous ensemble", line)
    ]
    assert not history, f"{page.name} narrates development history: {history[:3]}"


def test_readme_is_a_short_guide() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 350, f"README.md has {lines} lines: move details into docs/"
