"""Coverage-guided fuzzing (atheris) of the WKProto decoder and the session state machine.

Each input drives one of: the frame decoder at a fuzzed protocol version; a session
fed fuzzed bytes in fuzzed chunks (half the time after a valid CONNECT, so the
authenticated paths are reached too), then a RECV delivery and a resend pass; or a
JSON-RPC session. Any exception escaping is a crash. Seeds are real frames.

    python tests/fuzz/fuzz_protocol.py -runs=100000 [corpus_dir]
"""
from __future__ import annotations

import os
import sys
import time

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

with atheris.instrument_imports():
    from gateway import jsonrpc
    from gateway import wkproto as wk
    from gateway.ports import Delivery
    from gateway.session import AUTHED
    from gateway.session_crypto import client_key_pair
    from tests.support.gateway_harness import FakeTransport, make_gateway

GW, TOKENS, SINK, _ = make_gateway()
GW.publish = None
TOKENS.tokens[("u1", 1)] = ("t1", 1)
_, CLIENT_KEY = client_key_pair(bytes(range(1, 33)))


def connect_frame(version: int) -> bytes:
    return wk.encode(wk.Connect(version, 1, "d1", "u1", "t1", int(time.time() * 1000), CLIENT_KEY))


def seeds() -> list[bytes]:
    frames = [
        connect_frame(5), wk.encode(wk.Send(0, 1, "c", "", "u2", 1, 0, "k" * 32, "", b"payload", 2)),
        wk.encode(wk.Recvack(1, 1)), b"\x70", wk.encode(wk.Disconnect(1, "bye")),
        wk.encode(wk.Sub(0, "", "ch", 7, 0, "{}")), wk.encode(wk.Send(0x0A, 1, "c", "s", "u2", 2, 5, "", "t", b"x"), 3),
        b'{"method":"connect","id":"1","params":{"uid":"u1","token":"t1"}}{"method":"ping","id":"2"}',
        b'{"method":"send","id":"3","params":{"channelId":"u2","channelType":1,"payload":"aGk="}}',
    ]
    return [bytes([i % 4]) + f for i, f in enumerate(frames)]


def chunks(fdp: atheris.FuzzedDataProvider, data: bytes):
    pos = 0
    while pos < len(data):
        n = fdp.ConsumeIntInRange(1, 64) if fdp.remaining_bytes() else len(data)
        yield data[pos:pos + n]
        pos += n


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096))
    if mode == 0:
        d = wk.FrameDecoder(fdp.ConsumeIntInRange(0, 7))
        for c in chunks(fdp, body):
            d.feed(c)
        return
    if mode == 3:
        d = jsonrpc.JsonStreamDecoder()
        for c in chunks(fdp, body):
            d.feed(c)
        return
    t = FakeTransport("ws" if fdp.ConsumeBool() else "tcp")
    s = GW.open(t)
    if mode == 1 and fdp.ConsumeBool():
        s.feed(connect_frame(fdp.ConsumeIntInRange(0, 9)))
    for c in chunks(fdp, body):
        s.feed(c)
    if s.state == AUTHED:
        s.deliver(Delivery(fdp.ConsumeIntInRange(-2**63, 2**63 - 1), fdp.ConsumeIntInRange(0, 2**32 - 1),
                           fdp.ConsumeUnicodeNoSurrogates(10), fdp.ConsumeUnicodeNoSurrogates(10),
                           fdp.ConsumeUnicodeNoSurrogates(10), fdp.ConsumeIntInRange(0, 255),
                           fdp.ConsumeIntInRange(-2**31, 2**31 - 1), fdp.ConsumeBytes(64),
                           fdp.ConsumeIntInRange(0, 15), fdp.ConsumeIntInRange(0, 255)))
        s.resend_due(time.monotonic() + 10_000)
        GW.sweep(time.monotonic() + 10_000)
    s.close("fuzz done")


def main() -> None:
    args = list(sys.argv)
    corpus = [a for a in args[1:] if not a.startswith("-")]
    if corpus:
        os.makedirs(corpus[0], exist_ok=True)
        for i, seed in enumerate(seeds()):
            with open(os.path.join(corpus[0], f"seed{i}"), "wb") as fh:
                fh.write(seed)
    atheris.Setup(args, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
