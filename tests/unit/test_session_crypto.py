"""The session cipher's reused CBC encryptor gives exactly what a fresh encryptor per message gives."""
from __future__ import annotations

import random

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.session_crypto import SessionCipher, _pad


def test_reused_encryptor_matches_fresh_encryptor_per_message():
    rnd = random.Random(7)
    key, iv = b"0123456789abcdef", b"abcdefghijklmnop"
    c = SessionCipher(key, iv)
    for _ in range(3000):
        p = rnd.randbytes(rnd.choice([0, 1, 15, 16, 17, 31, 32, 33, rnd.randint(0, 2000)]))
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        assert c._raw_encrypt(p) == enc.update(_pad(p)) + enc.finalize()
        if rnd.random() < 0.2:
            assert c.decrypt(c.encrypt(p)) == p


def test_two_sessions_do_not_share_state():
    a = SessionCipher(b"0123456789abcdef", b"abcdefghijklmnop")
    b = SessionCipher(b"fedcba9876543210", b"ponmlkjihgfedcba")
    first = a.encrypt(b"hello")
    b.encrypt(b"something else entirely")
    assert a.encrypt(b"hello") == first
