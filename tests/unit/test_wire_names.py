"""Mesh methods, topics, slot calls and log operations are spelled only in mesh/net/wire.py."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIRE = ROOT / "mesh" / "net" / "wire.py"
# a call that names a mesh method, topic, slot call or log op, with a string literal where the name goes
CALL = re.compile(r"\.(handle|subscribe|publish|publish_remote|request_controller|register|propose_op)\(\s*[\"']"
                  r"|\.(request|call|call_slot|propose)\([^,()]*,\s*[\"']")


def test_no_wire_name_is_a_string_literal_outside_wire():
    found = []
    for pkg in ("mesh", "gateway", "api", "coordinator"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path == WIRE:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if CALL.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "wire names spelled outside mesh/net/wire.py:\n" + "\n".join(found)


def test_every_wire_name_is_unique():
    names = re.findall(r"^([A-Z_]+) = \"([^\"]+)\"", WIRE.read_text(), re.M)
    by_kind: dict[str, list[str]] = {}
    for const, value in names:
        kind = "op" if const.startswith("OP_") else "other"
        by_kind.setdefault(kind, []).append(value)
    for kind, values in by_kind.items():
        dupes = sorted({v for v in values if values.count(v) > 1})
        assert not dupes, f"{kind} names used twice: {dupes}"
