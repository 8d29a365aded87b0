"""README is the front door and docs/ the rest: every relative link between them resolves.

Links are Markdown's ``[text](target)`` outside code; a target is a file of the repository,
optionally with ``#anchor``, and an anchor is a heading of that file as GitHub makes it (lower
case, punctuation dropped, spaces as hyphens, ``-1``, ``-2``... for repeats).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]

_FENCE = re.compile(r"^(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`]*`")
_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(_INLINE_CODE.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    kept = "".join(
        c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N")
    )  # fmt: skip
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text()):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match[2])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    return [m[2] for line in prose_lines(path.read_text()) for m in _LINK.finditer(line)]


def broken_links(path: Path, *, root: Path = ROOT) -> list[str]:
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or not linked.is_relative_to(root):
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(root)}")
    return broken


def test_the_anchors_are_githubs():
    assert slug("Walkthrough: an email in the dead-letter queue, fixed") == (
        "walkthrough-an-email-in-the-dead-letter-queue-fixed"
    )
    assert slug("IAM permissions (least privilege)") == "iam-permissions-least-privilege"
    assert slug("Where a request's time goes") == "where-a-requests-time-goes"
    assert slug("`make run` and Celery_SQS") == "make-run-and-celery_sqs"


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n## A section\n\n[ok](#a-section) [no](#nowhere) [gone](gone.md)\n")
    assert broken_links(page, root=tmp_path) == [
        "#nowhere: no heading #nowhere in page.md",
        "gone.md: no such file",
    ]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    assert links(path) or path == README, f"{path.name} links nowhere"
    assert broken_links(path) == []


def test_readme_is_the_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_each_page_starts_with_a_summary_and_links_back(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ")
    summary = "\n".join(lines[2 : lines.index("", 2)])
    assert summary and not summary.startswith("#")
    assert "../README.md" in links(path)


def test_ci_runs_the_test_command_readme_gives():
    block = re.search(r"## The two commands\n.*?```sh\n(.*?)```", README.read_text(), re.S)
    assert block and re.search(r"^make test\b", block[1], re.M)
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci
