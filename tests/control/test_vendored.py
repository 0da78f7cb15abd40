"""Vendored files are the ones their README names: same version, same bytes."""

import hashlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "static" / "vendor" / "README.md", ROOT / "tests" / "e2e" / "vendor" / "README.md"]


def pinned(readme: Path) -> list[tuple[Path, str]]:
    """(file, sha256) from each row of the README's table that has a SHA-256 column."""
    lines = readme.read_text().splitlines()
    rows = [line.strip().strip("|").split("|") for line in lines if line.startswith("|")]
    header = [cell.strip() for cell in rows[0]]
    file_at, sha_at = header.index("file"), header.index("SHA-256")
    return [(readme.parent / row[file_at].strip(), row[sha_at].strip()) for row in rows[2:]]


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_vendored_file_matches_the_sha256_in_its_readme(readme):
    files = pinned(readme)
    assert files
    for path, sha in files:
        assert path.is_file(), f"{path} is named in {readme} but missing"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, f"{path} differs from {readme}"


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_vendored_file_is_missing_from_its_readme(readme):
    named = {path for path, _sha in pinned(readme)}
    present = {p for p in readme.parent.rglob("*") if p.is_file() and p.name != "README.md"}
    assert present - named == set(), f"vendored but not in {readme}"
