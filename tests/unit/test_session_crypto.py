"""The session cipher's reused CBC encryptor and decryptor give exactly what fresh ones per message give."""
from __future__ import annotations

import base64
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.session_crypto import CryptoError, SessionCipher, _pad


def test_reused_encryptor_and_decryptor_match_fresh_ones_per_message():
    rnd = random.Random(7)
    key, iv = b"0123456789abcdef", b"abcdefghijklmnop"
    c = SessionCipher(key, iv)
    for _ in range(3000):
        p = rnd.randbytes(rnd.choice([0, 1, 15, 16, 17, 31, 32, 33, rnd.randint(0, 2000)]))
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        fresh = enc.update(_pad(p)) + enc.finalize()
        assert c._raw_encrypt(p) == fresh
        assert c.decrypt(base64.b64encode(fresh)) == p
        if rnd.random() < 0.1:  # a payload that is not ours (garbage, bad padding) leaves the next ones intact
            try:
                c.decrypt(base64.b64encode(rnd.randbytes(16 * rnd.randint(1, 4))))
            except CryptoError:
                pass
        if rnd.random() < 0.05:
            with pytest.raises(CryptoError):
                c.decrypt(b"not base64!")


def test_two_sessions_do_not_share_state():
    a = SessionCipher(b"0123456789abcdef", b"abcdefghijklmnop")
    b = SessionCipher(b"fedcba9876543210", b"ponmlkjihgfedcba")
    first = a.encrypt(b"hello")
    b.encrypt(b"something else entirely")
    assert a.encrypt(b"hello") == first
