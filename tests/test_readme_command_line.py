"""The README's "Command line" section: its Python example runs, and its .wtok layout table is
the one the code documents (`wetok.tokens.WTOK_LAYOUT`)."""

from __future__ import annotations

import re
from pathlib import Path

from wetok.tokens import WTOK_LAYOUT

README = Path(__file__).resolve().parents[1] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Command line")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_wtok_layout_in_readme_matches_the_code():
    tables = re.findall(r"```text\n(offset size type.*?)```", section(), flags=re.S)
    assert tables == [WTOK_LAYOUT.split("\n\n")[0] + "\n"]


def test_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", section(), flags=re.S)
    assert blocks
    for index, code in enumerate(blocks):
        exec(compile(code, f"README.md[command line python block {index}]", "exec"), {"__name__": f"readme_cli_{index}"})
