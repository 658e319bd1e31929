"""Examples that cannot rot: every ```console block in README.md and docs/ is run against the shipped
examples/ (and our YOLOv5-shaped checkout as yolov5/) in a fresh folder and must print what the page shows,
volatile parts written as `…` (scripts/docs.py says how). A transcript that cannot run here (a download,
training, a real ultralytics install) carries `<!-- not run: REASON -->` on the line before it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import docs_script

ROOT = Path(__file__).parent.parent


docs = docs_script()

PAGES = docs.pages()


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_print_what_the_page_shows(page):
    problems = docs.check_page(page)
    assert not problems, "\n\n".join(problems)


def test_readme_and_docs_have_examples_that_run():
    """The convention is in use: the README's quickstart and the pages run commands, not only show them."""
    assert docs.runnable(ROOT / "README.md")
    assert sum(len(docs.runnable(page)) for page in PAGES) >= 10


def test_a_changed_message_fails_the_check(tmp_path, monkeypatch):
    """The check is not vacuous: a page whose output differs by one word is reported, with a diff; `…`
    lines and inline `…` match what they stand for."""
    page = tmp_path / "page.md"
    page.write_text("```console\n$ yolopatch ops cbam\nCBAM: nothing like this\n```\n", encoding="utf-8")
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    (tmp_path / "examples").mkdir()
    (tmp_path / "tests" / "fixtures" / "checkouts" / "master").mkdir(parents=True)
    (tmp_path / "tests" / "fixtures" / "darknet" / "pytorch_yolov4").mkdir(parents=True)
    (problem,) = docs.check_page(page)
    assert "page.md:2: `yolopatch ops cbam` prints something else" in problem and "+CBAM" in problem
    assert docs.matches(["a", "…", "d …"], ["a", "b", "c", "d e f"])
    assert docs.matches(["a", "…"], ["a"]) and not docs.matches(["a", "…", "d"], ["a", "b"])


def test_an_unmarked_transcript_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text(
        "```text\n$ yolopatch ops\n```\n\n<!-- not run: a download -->\n```console\n$ pip x\n```\n"
    )
    (problem,) = docs.unmarked_transcripts(page)
    assert problem.startswith("page.md:1: a ```text block")


def _slug(heading: str) -> str:
    """The anchor mkdocs' toc gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "").strip().lower())
    return re.sub(r"[\s]+", "-", text)


def test_readme_links_reach_existing_pages_and_headings():
    """README.md is not part of the site, so `mkdocs build --strict` does not see its links: check them here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert len(links) >= 10
    for path, anchor in links:
        page = ROOT / path
        assert page.is_file(), path
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
            assert anchor in {_slug(h) for h in headings}, f"{path}#{anchor}"
