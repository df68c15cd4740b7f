"""Regenerate the README's case-file reference from the schemas: python tools/update_readme.py"""

from __future__ import annotations

import re
from pathlib import Path

from hybrid.cases import case_reference

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
new = re.sub(
    r"(<!-- case-reference:start -->\n).*(<!-- case-reference:end -->)",
    lambda m: m.group(1) + case_reference() + m.group(2),
    text,
    flags=re.S,
)
readme.write_text(new)
print(f"updated {readme}")
