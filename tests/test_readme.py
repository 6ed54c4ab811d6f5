"""The README's Python examples run as tests (blocks marked `# needs:` are only compiled)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example(index):
    code = BLOCKS[index]
    compiled = compile(code, f"README.md[python block {index}]", "exec")
    if code.lstrip().startswith("# needs:"):
        return  # depends on files this repository cannot ship (released weights)
    exec(compiled, {"__name__": f"readme_{index}"})
