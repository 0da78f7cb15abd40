"""axe-core, the accessibility engine browsers' own audits use, run inside a test's page.

The script is vendored (tests/e2e/vendor, version and SHA-256 in its README): nothing is
fetched while the tests run. `serious_violations()` answers what a test asserts is empty:
every rule broken at impact serious or critical, with the elements that break it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1.min.js"
BLOCKING = ("serious", "critical")


def audit(page) -> list[dict[str, Any]]:
    """Every violation axe finds on the page as it is now (WCAG 2.x A and AA rules)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Through evaluate, not a <script> tag: the page's Content-Security-Policy allows
        # only its own scripts, and a test must not loosen it.
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
                resultTypes: ["violations"],
            });
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
            }));
        }"""
    )
    return result


def serious_violations(page) -> list[str]:
    """One line per element breaking a serious or critical rule: empty is the goal."""
    lines = []
    for violation in audit(page):
        if violation["impact"] not in BLOCKING:
            continue
        for node in violation["nodes"]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"{violation['id']} ({violation['impact']}): {node['target']}: {summary[:300]}")
    return lines
