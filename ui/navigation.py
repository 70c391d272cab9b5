"""The page list, read from ``pages/``: each file ``NN_name.py`` is one page, and the first
line of its module docstring is the question it answers (shown on the home page)."""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"


def page_files() -> list[Path]:
    """Page files in menu order; the first is the home page."""
    return sorted(PAGES_DIR.glob("[0-9]*.py"))


def page_title(path: Path) -> str:
    """``03_logit_lens.py`` -> ``Logit Lens``."""
    return path.stem.split("_", 1)[-1].replace("_", " ").title().replace("Qk Ov", "QK/OV")


def page_slug(path: Path) -> str:
    """``03_logit_lens.py`` -> ``logit_lens`` (the page's URL path)."""
    return path.stem.split("_", 1)[-1]


def page_question(path: Path) -> str:
    """The first line of a page's module docstring."""
    return _question(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _question(path: Path, version: int) -> str:
    """Parsed once per version of the file: the home page lists every page on every run."""
    doc = (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    return doc.splitlines()[0] if doc else ""
