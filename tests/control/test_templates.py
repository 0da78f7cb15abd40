"""Template source rules that Django does not check for us."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_template_comment_spans_lines():
    """Django's {# #} comments end at the line's end: a two-line one is printed as text
    (it was, at the top of every page, pushing the rest of <head> into <body>)."""
    broken = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        for number, line in enumerate(template.read_text().splitlines(), 1):
            if line.count("{#") > line.count("#}"):
                broken.append(f"{template.relative_to(ROOT)}:{number}")
    assert broken == [], "use {% comment %} for comments over several lines: " + ", ".join(broken)


def test_the_login_page_shows_no_template_source(client, db):
    page = client.get("/login/").content.decode()
    assert "{#" not in page and "{%" not in page
