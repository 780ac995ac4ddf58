"""The documentation's links lead somewhere: every relative link in README.md and docs/ names a file."""

import re

import pytest

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_names_an_existing_file(page):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    relative = [link for link in links if "://" not in link]
    assert relative or page.name != "README.md"
    for link in relative:
        assert (page.parent / link).exists(), f"{page.name} links to {link}, which does not exist"


CAPTIONS = sorted((REPO / "workflow" / "report").glob("*.rst"))


@pytest.mark.parametrize("caption", CAPTIONS, ids=[p.name for p in CAPTIONS])
def test_every_report_caption_is_valid_restructuredtext(caption):
    """The report shows a docutils warning box for a caption with stray markup (`|G|` is a substitution)."""
    import io

    import docutils.core

    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "x", caption.read_text())  # the Jinja, as some value
    warnings = io.StringIO()
    docutils.core.publish_string(
        text, writer_name="html", settings_overrides={"warning_stream": warnings, "report_level": 2}
    )
    assert warnings.getvalue() == "", warnings.getvalue()
