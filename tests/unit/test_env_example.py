""".env.example lists every variable, and the values it shows are the real defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from object_clerk.settings import ClerkSettings, env_name

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def example_names() -> list[str]:
    return re.findall(r"(?m)^([A-Z0-9_]+)=", EXAMPLE.read_text())


def test_every_setting_is_listed_once() -> None:
    """Each ClerkSettings field's variable appears exactly once, and nothing else does."""
    names = example_names()
    assert len(names) == len(set(names))
    assert set(names) == {env_name(field) for field in ClerkSettings.model_fields}


def test_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Loading .env.example as the .env file gives exactly the built-in defaults."""
    monkeypatch.chdir(tmp_path)
    for name in example_names():
        monkeypatch.delenv(name, raising=False)
    defaults = ClerkSettings(_env_file=None)
    from_example = ClerkSettings(_env_file=str(EXAMPLE))
    assert from_example.model_dump() == defaults.model_dump()


def test_readme_documents_every_variable() -> None:
    """README.rst's configuration table names every variable."""
    readme = (EXAMPLE.parent / "README.rst").read_text()
    missing = [name for name in example_names() if f"``{name}``" not in readme]
    assert missing == []
