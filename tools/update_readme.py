"""Regenerate docs/case-reference.md, the case-file reference, from the schemas: python tools/update_readme.py"""

from __future__ import annotations

from pathlib import Path

from hybrid.cases import case_reference

HEADER = """# Case-file reference

Every key of a case file, generated from the schemas that validate it (`python tools/update_readme.py`
rewrites this page; `tests/test_docs.py` checks that it is current). A key shown with a condition, such as
`(provider = "monitor")`, exists only for that choice. Give keys in the case file's TOML tables or on the
command line as `--set KEY=VALUE`; the model's parameters and units are in [physics.md](physics.md).

"""

page = Path(__file__).resolve().parents[1] / "docs" / "case-reference.md"


def render() -> str:
    """The page's full text."""
    return HEADER + case_reference()


if __name__ == "__main__":
    page.write_text(render())
    print(f"updated {page}")
