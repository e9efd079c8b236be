"""The documentation as the tests read it: README.md and every page under docs/, and the code blocks they show."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# A fenced block, optionally right after a `<!-- test: TAG -->` line that says which test runs it.
BLOCK = re.compile(r"^(?:<!-- test: (?P<tag>[\w-]+) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    page: Path
    lang: str
    code: str
    tag: str | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}: {self.code.splitlines()[0] if self.code else ''}"


def blocks(pages: list[Path] = PAGES) -> list[Block]:
    """Every fenced code block of `pages`, in order."""
    return [
        Block(page, m["lang"], m["code"], m["tag"])
        for page in pages
        for m in BLOCK.finditer(page.read_text(encoding="utf-8"))
    ]


def tagged(tag: str) -> list[Block]:
    """The blocks that a `<!-- test: TAG -->` line marks for the test named by `tag`."""
    return [block for block in blocks() if block.tag == tag]
