"""The README's case-file reference is the one generated from the schemas, and its commands are the CI's."""

from __future__ import annotations

import re
from pathlib import Path

from hybrid.cases import case_reference

ROOT = Path(__file__).resolve().parents[1]


def _section(text: str) -> str:
    m = re.search(r"<!-- case-reference:start -->\n(.*)<!-- case-reference:end -->", text, re.S)
    assert m, "README lacks the case-reference markers"
    return m.group(1)


def test_case_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert _section(readme).strip() == case_reference().strip(), "regenerate with: python tools/update_readme.py"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", readme)
    assert len(commands) == 2, "README must have exactly two set-up commands"
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci
