"""The README's "Where the code is" section is current, and the docs' headings name real files."""

from __future__ import annotations

import importlib.util
import re

from .conftest import REPO


def _code_map():
    spec = importlib.util.spec_from_file_location("code_map", REPO / "scripts" / "code_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_code_map_is_current():
    code_map = _code_map()
    section = code_map.current_section((REPO / "README.md").read_text(encoding="utf-8"))
    assert section is not None, "README.md lacks the code-map markers"
    assert section == code_map.render(REPO), "stale: run python scripts/code_map.py --write"


def test_every_file_is_in_exactly_one_group_with_a_docstring():
    code_map = _code_map()
    files = code_map.python_files(REPO)
    assert "probattn/model/gpt.py" in files and "tests/test_code_map.py" in files
    assert code_map.group_of("probattn/studies/support_tokens/smooth.py").startswith("Study 1")
    assert code_map.group_of("probattn/studies/gpam/experiment.py").startswith("Study 2")
    assert code_map.group_of("probattn/studies/phase/theory.py").startswith("Study 3")
    assert code_map.group_of("probattn/experiments/baseline.py").startswith("Core")  # the registry and baseline
    assert code_map.group_of("probattn/robustness/perturb.py").startswith("Core")  # a general tool
    missing = [f for f in files if code_map.summary(REPO / f) == "(no docstring)"]
    assert missing == []


def test_summary_is_the_first_sentence(tmp_path):
    code_map = _code_map()
    f = tmp_path / "m.py"
    f.write_text('"""Tokens i.i.d. uniform over V symbols. Second sentence.\n\nMore."""\n')
    assert code_map.summary(f) == "Tokens i.i.d. uniform over V symbols."


def test_docs_headings_name_files_that_exist():
    named = 0
    for page in sorted((REPO / "docs").glob("*.md")):
        for heading in re.findall(r"^#+ .*$", page.read_text(encoding="utf-8"), re.M):
            bases = [REPO, REPO / "probattn"]  # a bare name is relative to a folder named before it
            for path in re.findall(r"`([\w./-]+\.py|[\w./-]+/)`", heading):
                named += 1
                found = [b / path for b in bases if (b / path).exists()]
                assert found, f"{page.name}: heading {heading!r} names {path}, which does not exist"
                bases.insert(0, found[0] if found[0].is_dir() else found[0].parent)
    assert named >= 10
