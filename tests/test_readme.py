"""Every command and code block of the README runs, at a small size, and writes the files the README promises.

The README's ```bash blocks are run in order in one temporary folder (later commands read what earlier ones
wrote), each `hybrid run` / `hybrid compare` with the overrides of ``TINY`` appended for its case file; its
```python blocks run as they stand (they are written small). The two set-up commands are checked against the CI.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from hybrid.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# Appended to `hybrid run` / `compare` / `sweep` of each shipped case: the same case at a size that takes seconds
# (later --set wins; a sweep's points all get them). The hybrid grain-growth case keeps whole windows (106 steps)
# and frames on window ends.
TINY = {
    "cases/atg_film.toml": ["time.end=0.4", "output.every=10"],
    "cases/graingrowth.toml": [
        "grid.shape=[32,32]",
        "grid.lengths=[64.0,64.0]",
        "initial.grains=6",
        "model.order_parameters=8",
        "time.steps=40",
        "output.every=20",
    ],
    "cases/graingrowth_hybrid.toml": [
        "grid.shape=[64,64]",
        "grid.lengths=[128.0,128.0]",
        "initial.grains=16",
        "time.steps=212",
        "output.every=106",
    ],
}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, re.S | re.M)


def readme_commands() -> list[str]:
    """Every `hybrid ...` command of the README's bash blocks, in order (of a set-up line, the part after `&&`)."""
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.split(" #")[0].strip()
                if part.startswith("hybrid "):
                    commands.append(part)
    return commands


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)[1:]
    if argv[0] in ("run", "compare", "sweep"):
        case = argv[1]
        assert case in TINY, f"README command on {case}: add its small-size overrides to TINY in {__file__}"
        argv += ["--no-progress"] + [x for kv in TINY[case] for x in ("--set", kv)]
    if argv[0] == "sweep":
        argv += ["--workers", "0"]  # in this process: the test's time, not a cluster's start-up
    return argv


def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cases").symlink_to(ROOT / "cases")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", README)
    assert len(commands) == 2, "README must have exactly two set-up commands"
    assert "hybrid run cases/atg_film.toml" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_readme_commands_run_and_write_what_the_readme_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = _workdir(tmp_path, monkeypatch)
    commands = readme_commands()
    assert any(c.startswith("hybrid compare") for c in commands) and any(c.startswith("hybrid info") for c in commands)
    for command in commands:
        rc = main(_argv(command))
        assert rc == 0, f"README command failed (exit {rc}): {command}\n{capsys.readouterr().err}"
    # every file named in a "| file | what it holds |" table exists after the commands
    tables = re.findall(r"^\| file \| what it holds \|\n\|[-| ]+\|\n((?:\|.*\n)+)", README, re.M)
    assert tables, "README lacks its tables of written files"
    listed = [m for t in tables for m in re.findall(r"^\| `([^`]+)`(?:, `([^`]+)`)? \|", t, re.M)]
    names = [n for pair in listed for n in pair if n]
    written = {p.name for p in work.rglob("*") if p.is_file()}
    missing = [n for n in names if n not in written]
    assert names and not missing, f"files the README lists but the commands did not write: {missing}"


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _workdir(tmp_path, monkeypatch)
    code = _blocks("python")[index]
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
    for out in re.findall(r'out="([^"]+)"', code):
        assert (tmp_path / out).is_file(), f"README python block {index + 1} did not write {out}"
