"""CURVE encryption and authentication of node-to-node traffic.

All nodes of a cluster share one CURVE key pair (``cluster.curvePublicKey`` and
``cluster.curveSecretKey``, Z85 text, from ``python -m mesh.net.curve``). Every ROUTER and
PUB socket is a CURVE server with that secret key; every DEALER and SUB connects as a
CURVE client with the same pair, so all traffic is encrypted. A ZAP handler accepts a
client only if it presents the cluster's public key: a process without the cluster's
keys can neither complete the handshake (it cannot reach a node's requests or
broadcasts) nor inject messages.
"""
from __future__ import annotations

import logging
import sys

import gevent
import zmq.green as zmq
from zmq.utils import z85

log = logging.getLogger("mesh.net.curve")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"


def generate() -> tuple[str, str]:
    """A new (public, secret) key pair as Z85 text."""
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def keys(public: str, secret: str) -> dict | None:
    """The ``Mesh(curve=...)`` argument, or None when CURVE is off."""
    if not public and not secret:
        return None
    return {"public": public.encode(), "secret": secret.encode(), "server": public.encode()}


class ZapHandler:
    """Answers libzmq's ZAP requests: 200 for the cluster key over CURVE, 400 for anything else."""

    def __init__(self, ctx, allowed_public_z85: bytes) -> None:
        self.ctx = ctx
        self.allowed = z85.decode(allowed_public_z85)
        self.sock = None
        self.greenlet: gevent.Greenlet | None = None
        self.denied = 0

    def start(self) -> None:
        self.sock = zmq.Socket(self.ctx, zmq.REP)  # a green socket on the mesh's plain context
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)
        self.greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
        if self.sock is not None:
            self.sock.close(linger=0)

    def _loop(self) -> None:
        while True:
            try:
                msg = self.sock.recv_multipart()
            except zmq.ZMQError:
                return
            version, request_id, _domain, address, _identity, mechanism = msg[:6]
            creds = msg[6:]
            ok = mechanism == b"CURVE" and creds and creds[0] == self.allowed
            if not ok:
                self.denied += 1
                log.warning("refused a node-to-node connection from %s (mechanism %s, %s)", address.decode(errors="replace"),
                            mechanism.decode(errors="replace"), "wrong key" if creds else "no key")
            self.sock.send_multipart([version, request_id, b"200" if ok else b"400",
                                      b"OK" if ok else b"not a member of this cluster", b"skein" if ok else b"", b""])


if __name__ == "__main__":  # pragma: no cover
    pub, sec = generate()
    sys.stdout.write(f"cluster:\n  curvePublicKey: \"{pub}\"\n  curveSecretKey: \"{sec}\"\n")
