"""A real ``Gateway`` with test doubles around it (for unit tests and the fuzzer only).

The transport records what the session writes; the authenticator accepts the tokens
it was given; the sink answers every SEND with a scripted result.
"""
from __future__ import annotations

import gevent

from gateway import wkproto as wk
from gateway.gateway import Gateway
from gateway.ports import AuthResult, SendResult
from mesh.base import config


class FakeTransport:
    def __init__(self, kind: str = "tcp") -> None:
        self.kind = kind
        self.remote = "test:1"
        self.binary: list[bytes] = []
        self.text: list[str] = []
        self.closed = False
        self.blocked = False
        self.writes = 0  # write calls (one may carry several frames)

    @staticmethod
    def frame(data, text: bool):
        return data if text else bytes(data)  # text frames stay str (recorded apart)

    def write_nowait(self, buffers) -> int:
        """Takes everything, unless ``blocked`` (then nothing, like a full socket)."""
        if self.closed:
            raise OSError("closed")
        if self.blocked:
            return 0
        self.writes += 1
        n = 0
        for b in buffers:
            if isinstance(b, str):
                self.text.append(b)
            else:
                self.binary.append(bytes(b))
            n += len(b)
        return n

    def write_wait(self, buffers) -> int:
        while self.blocked and not self.closed:
            gevent.sleep(0.005)
        return self.write_nowait(buffers)

    def close(self) -> None:
        self.closed = True

    def packets(self, version: int = 5) -> list:
        d = wk.FrameDecoder(version)
        out = []
        for frame in self.binary:
            got = d.feed(frame)
            assert len(got) == 1, "every outbound frame must be exactly one packet"
            out.extend(got)
        return out


class Tokens:
    def __init__(self) -> None:
        self.tokens: dict[tuple[str, int], tuple[str, int]] = {}

    def authenticate(self, uid: str, device_flag: int, token: str) -> AuthResult:
        t = self.tokens.get((uid, device_flag))
        if t is None or t[0] != token:
            return AuthResult(wk.REASON_AUTH_FAIL)
        return AuthResult(wk.REASON_SUCCESS, t[1])


class RecordingSink:
    def __init__(self) -> None:
        self.requests = []
        self.next_id = 1000

    def submit(self, req, done) -> None:
        self.requests.append(req)
        self.next_id += 1
        done(SendResult(wk.REASON_SUCCESS, self.next_id, len(self.requests)))


def make_gateway(**overrides) -> tuple[Gateway, Tokens, RecordingSink, list]:
    env = {"WK_CLUSTER_NODEID": "7"}
    env.update({config.env_name(k): str(v) for k, v in overrides.items()})
    cfg = config.load(None, env=env)
    tokens, sink = Tokens(), RecordingSink()
    published: list = []
    gw = Gateway(7, cfg, tokens, sink, publish=lambda kind, payload: published.append((kind, payload)))
    return gw, tokens, sink, published
