"""docs/ARCHITECTURE.md matches the tree: every module named (under its package), no path that does not exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGES = ("mesh", "gateway", "api", "coordinator")
PATH_ROOTS = PACKAGES + ("ops", "docs", "tests")
GENERATED = {"api/static/demo/vendor/"}  # made by `make install` (git-ignored)


def _text() -> str:
    return DOC.read_text()


def _named_paths(text: str) -> set[str]:
    """Every backticked token that is a path in this repository (``mesh/...``, ``ops/...``)."""
    out = set()
    for tok in re.findall(r"`([^`\s]+)`", text):
        if "<" in tok or "*" in tok:
            continue
        if tok.split("/", 1)[0] in PATH_ROOTS and "/" in tok:
            out.add(tok)
    return out


def _modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if p.name != "__init__.py" and "node_modules" not in p.parts}


def _packages() -> set[str]:
    return {p.parent.relative_to(ROOT).as_posix() + "/" for pkg in PACKAGES for p in (ROOT / pkg).rglob("__init__.py")}


def test_every_module_and_package_is_named():
    named = _named_paths(_text())
    missing = sorted((_modules() | _packages()) - named)
    assert not missing, f"docs/ARCHITECTURE.md does not name: {missing}"


def test_every_path_named_exists():
    gone = sorted(p for p in _named_paths(_text()) - GENERATED if not (ROOT / p).exists())
    assert not gone, f"docs/ARCHITECTURE.md names paths that do not exist: {gone}"


def test_modules_are_listed_under_their_package():
    text = _text()
    section = text[text.index("## Modules"):]
    section = section[:section.index("\n## ", 1)]
    listed = set()
    for part in section.split("\n### ")[1:]:
        heading, _, body = part.partition("\n")
        pkg = re.search(r"`([^`]+/)`", heading)
        for row in body.splitlines():
            if not row.startswith("| `"):
                continue
            for mod in re.findall(r"`([^`]+\.py)`", row.split(" | ")[0]):
                listed.add(mod)
                if pkg is not None:
                    assert mod.rsplit("/", 1)[0] + "/" == pkg.group(1), f"{mod} is listed under {pkg.group(1)}"
    missing = sorted(_modules() - listed)
    assert not missing, f"modules without a row in the Modules tables: {missing}"
