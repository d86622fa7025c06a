"""The README's Python snippets run as written (a snippet right after an HTML comment
``<!-- not-run: reason -->`` is skipped with that reason)."""

from __future__ import annotations

import re

import pytest

from .conftest import REPO

FENCE = re.compile(r"(?:<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*\n)?```python\n(?P<code>.*?)```", re.S)


def python_snippets(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, reason not to run or None) of each ```python block."""
    return [(text[: m.start("code")].count("\n") + 1, m.group("code"), m.group("reason"))
            for m in FENCE.finditer(text)]


def test_the_snippet_finder_sees_the_not_run_comment():
    text = "a\n```python\nx = 1\n```\n<!-- not-run: needs a GPU -->\n```python\ny = 2\n```\n"
    assert python_snippets(text) == [(3, "x = 1\n", None), (7, "y = 2\n", "needs a GPU")]


SNIPPETS = python_snippets((REPO / "README.md").read_text())


def test_the_readme_has_snippets_that_run():
    assert sum(reason is None for _, _, reason in SNIPPETS) >= 2


@pytest.mark.parametrize("line, code, reason", SNIPPETS, ids=[f"README.md:{line}" for line, _, _ in SNIPPETS])
def test_readme_snippet_runs(line, code, reason, tmp_path, monkeypatch):
    if reason:
        pytest.skip(f"README.md:{line} is marked not-run: {reason}")
    monkeypatch.chdir(tmp_path)  # whatever a snippet writes lands here
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
