"""Gateway implements SessionHost, and a Session uses nothing of the gateway outside it."""
import inspect
import re
from pathlib import Path

from gateway.ports import SessionHost
from tests.support.gateway_harness import make_gateway

ROOT = Path(__file__).resolve().parents[2]


def _members() -> set[str]:
    names = {n for n in vars(SessionHost) if not n.startswith("_")}
    return names | set(SessionHost.__annotations__)


def test_gateway_has_every_session_host_member_with_the_same_parameters():
    gw, *_ = make_gateway()
    for name in _members():
        assert hasattr(gw, name), f"Gateway lacks {name}"
        want = getattr(SessionHost, name, None)
        if callable(want):
            assert list(inspect.signature(getattr(gw, name)).parameters) == \
                list(inspect.signature(want).parameters)[1:], name


def test_session_uses_only_the_session_host():
    used = set(re.findall(r"self\.gw\.(\w+)", (ROOT / "gateway" / "session.py").read_text()))
    assert used, "session.py no longer talks to its host through self.gw"
    assert used <= _members(), f"Session uses gateway members outside SessionHost: {sorted(used - _members())}"
