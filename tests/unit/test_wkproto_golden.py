"""Byte-for-byte golden vectors of ../shared/reference/wukongim.md §1.10 (codec and crypto)."""
from __future__ import annotations

import base64
import hashlib

from gateway import wkproto as wk
from gateway.session_crypto import SessionCipher, derive_aes_key, new_server_key


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


CLIENT_PRIV = bytes(range(1, 33))
SERVER_PRIV = bytes(range(0x21, 0x41))
SALT = "abcdef1234567890"

CONNECT = h("""10 45 05 01 00 03 64 31 57 00 02 75 31 00 02 74 31 00 00 01 8b cf e5 68 00 00 2c
42 36 4e 38 76 42 51 67 6b 38 69 33 56 64 77 62 45 4f 68 73 74 43 59 33 53 74 46
71 71 46 50 74 43 39 2f 41 73 72 68 74 48 48 77 3d""")
CONNACK_V5 = h("""21 52 05 00 00 00 00 00 00 00 00 01 00 2c 57 47 6d 76 39 46 42 55 6c 7a 4c 4c 71
75 31 65 58 66 6d 7a 43 6d 32 6a 48 4c 44 6c 64 43 75 74 57 74 53 68 70 32 6a 78
70 6e 73 3d 00 10 61 62 63 64 65 66 31 32 33 34 35 36 37 38 39 30 00 00 00 00 00
00 03 e9""")
SEND_V5 = h("""32 62 00 00 00 00 01 00 04 63 6d 6e 31 00 02 75 32 01 00 00 00 00 00 20 65 32 61
38 63 30 65 34 39 36 62 38 37 30 63 39 61 36 65 35 63 61 35 64 36 36 65 61 34 39
36 34 56 4a 58 67 35 72 37 43 76 39 6a 58 56 72 41 7a 6e 50 59 67 77 73 6c 6c 69
61 65 55 64 50 52 74 41 4b 78 6e 42 61 36 44 59 4a 63 3d""")
SENDACK = h("42 11 18 d7 5b 84 23 f3 00 01 00 00 00 01 00 00 00 01 01")
RECV_V5 = h("""52 72 00 00 20 30 33 38 32 37 62 37 62 63 33 32 37 65 62 66 31 30 62 35 63 36 35
65 33 64 39 62 31 35 66 30 61 00 02 75 31 00 02 75 31 01 00 00 00 00 00 04 63 6d
6e 31 18 d7 5b 84 23 f3 00 01 00 00 00 01 65 53 f1 01 56 4a 58 67 35 72 37 43 76
39 6a 58 56 72 41 7a 6e 50 59 67 77 73 6c 6c 69 61 65 55 64 50 52 74 41 4b 78 6e
42 61 36 44 59 4a 63 3d""")
RECVACK = h("62 0c 18 d7 5b 84 23 f3 00 01 00 00 00 01")
DISCONNECT = h("90 18 0c 00 15 6c 6f 67 69 6e 20 69 6e 20 6f 74 68 65 72 20 64 65 76 69 63 65")
MESSAGE_ID = 1790000000000000001
ENCRYPTED = b"VJXg5r7Cv9jXVrAznPYgwslliaeUdPRtAKxnBa6DYJc="


def session():
    priv, server_key = new_server_key(SERVER_PRIV)
    _, client_key = new_server_key(CLIENT_PRIV)
    key = derive_aes_key(priv, client_key)
    return server_key, client_key, key, SessionCipher.from_salt(key, SALT)


def test_key_exchange_vectors():
    server_key, client_key, key, _ = session()
    assert client_key == "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw="
    assert server_key == "WGmv9FBUlzLLqu1eXfmzCm2jHLDldCutWtShp2jxpns="
    assert base64.b64decode(server_key).hex() == "5869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b"
    assert hashlib.md5(b"qE3Hw8jwWLGy3EzR6bXcCnmH+ItqlWTN4zkfxCEVnnc=").hexdigest() == "8e65549ac3e59ba41680cb1ebc937b38"
    assert key == b"8e65549ac3e59ba4"
    # the client derives the same key from the server's public key
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    assert derive_aes_key(X25519PrivateKey.from_private_bytes(CLIENT_PRIV), server_key) == key


def test_connect():
    p = wk.Connect(5, 1, "d1W", "u1", "t1", 1700000000000, "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=")
    assert wk.encode(p) == CONNECT
    d = wk.FrameDecoder()
    assert d.feed(CONNECT) == [p] and d.error is None


def test_connack_v5():
    p = wk.Connack(0, 1, "WGmv9FBUlzLLqu1eXfmzCm2jHLDldCutWtShp2jxpns=", SALT, 1001, 5, True)
    assert wk.encode(p, 5) == CONNACK_V5
    got = wk.FrameDecoder(5).feed(CONNACK_V5)[0]
    assert got.server_version == 5 and got.node_id == 1001 and got.salt == SALT and got.has_server_version


def test_connack_v2_has_no_server_version_or_node_id():
    p = wk.Connack(0, 1, "k", SALT, 1001, 0, False)
    raw = wk.encode(p, 2)
    assert raw[0] == 0x20 and len(raw) == 2 + 8 + 1 + 3 + 18


def test_send_v5_with_msg_key():
    *_, cipher = session()
    plaintext = b'{"type":1,"content":"hi"}'
    assert cipher.encrypt(plaintext) == ENCRYPTED
    assert cipher.decrypt(ENCRYPTED) == plaintext
    msg_key = cipher.send_msg_key(1, "cmn1", "u2", 1, ENCRYPTED)
    assert msg_key == "e2a8c0e496b870c9a6e5ca5d66ea4964"
    p = wk.Send(0, 1, "cmn1", "", "u2", 1, 0, msg_key, "", ENCRYPTED, wk.FLAG_RED_DOT)
    assert wk.encode(p, 5) == SEND_V5
    assert wk.FrameDecoder(5).feed(SEND_V5) == [p]


def test_sendack():
    p = wk.Sendack(MESSAGE_ID, 1, 1, 1, wk.FLAG_RED_DOT)
    assert wk.encode(p) == SENDACK
    assert wk.FrameDecoder().feed(SENDACK) == [p]


def test_recv_v5_with_msg_key():
    *_, cipher = session()
    msg_key = cipher.recv_msg_key(MESSAGE_ID, 1, "cmn1", 1700000001, "u1", "u1", 1, ENCRYPTED)
    assert msg_key == "03827b7bc327ebf10b5c65e3d9b15f0a"
    p = wk.Recv(0, msg_key, "u1", "u1", 1, 0, "cmn1", 0, "", 0, MESSAGE_ID, 1, 1700000001, "", ENCRYPTED,
                wk.FLAG_RED_DOT)
    assert wk.encode(p, 5) == RECV_V5
    assert wk.FrameDecoder(5).feed(RECV_V5) == [p]


def test_recvack_ping_pong_disconnect():
    # the vector carries the RECV's RedDot flag, echoed as the JS SDK does
    assert wk.encode(wk.Recvack(MESSAGE_ID, 1, wk.FLAG_RED_DOT)) == RECVACK
    assert wk.encode(wk.Ping()) == b"\x70"
    assert wk.encode(wk.Pong()) == b"\x80"
    assert wk.encode(wk.Disconnect(12, "login in other device")) == DISCONNECT
    d = wk.FrameDecoder()
    assert d.feed(RECVACK + b"\x70\x80" + DISCONNECT) == [
        wk.Recvack(MESSAGE_ID, 1, wk.FLAG_RED_DOT), wk.Ping(), wk.Pong(), wk.Disconnect(12, "login in other device")]


def test_varint_examples():
    for n, hx in [(127, "7f"), (128, "8001"), (321, "c102"), (16383, "ff7f"), (16384, "808001"),
                  (268435455, "ffffff7f")]:
        assert wk.encode_varint(n).hex() == hx
    assert wk.encode_varint(0) == b""
