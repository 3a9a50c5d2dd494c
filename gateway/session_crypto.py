"""WuKongIM's per-connection crypto: X25519 key exchange, AES-128-CBC payloads, msgKey.

Pure functions (no I/O), byte-compatible with WuKongIM v2.2.5 and its SDKs
(``../shared/reference/wukongim.md`` §1.7):

* the server makes a fresh X25519 key pair per CONNECT; ``shared = X25519(server
  private, base64decode(ClientKey))``;
* the AES key is the first 16 characters of ``md5_hex(base64(shared))`` taken as ASCII
  bytes; the IV is the 16-character alphanumeric salt sent in CONNACK, as ASCII bytes;
* a payload on the wire is ``base64(AES-128-CBC-PKCS7(plaintext))`` (ASCII text), the
  same static IV for every message of the session;
* ``msgKey = md5_hex(base64(AES(signString)))`` where the sign string concatenates
  packet fields as decimal text (SEND: ClientSeq, ClientMsgNo, ChannelID, ChannelType,
  encrypted payload; RECV: MessageID, MessageSeq, ClientMsgNo, Timestamp, FromUID,
  ChannelID, ChannelType, encrypted payload).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import string

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_ALNUM = (string.digits + string.ascii_letters).encode()


class CryptoError(Exception):
    pass


def random_salt() -> str:
    """16 random characters from [0-9a-zA-Z] (the session IV)."""
    raw = os.urandom(16)
    return bytes(_ALNUM[b % 62] for b in raw).decode()


def new_server_key(private_bytes: bytes | None = None) -> tuple[X25519PrivateKey, str]:
    """A server key pair; returns (private key, base64 public key for CONNACK.ServerKey)."""
    priv = X25519PrivateKey.from_private_bytes(private_bytes) if private_bytes else X25519PrivateKey.generate()
    pub = priv.public_key().public_bytes_raw()
    return priv, base64.b64encode(pub).decode()


def derive_aes_key(priv: X25519PrivateKey, client_key_b64: str) -> bytes:
    """The 16 ASCII bytes used as the AES key, from our private key and the client's public key."""
    try:
        raw = base64.b64decode(client_key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("client key is not base64") from None
    if len(raw) < 32:
        raise CryptoError("client key shorter than 32 bytes")
    try:
        shared = priv.exchange(X25519PublicKey.from_public_bytes(raw[:32]))
    except ValueError as exc:  # low-order point: all-zero shared secret
        raise CryptoError(f"unusable client key: {exc}") from None
    return hashlib.md5(base64.b64encode(shared)).hexdigest()[:16].encode()


_PADDING = [bytes([n]) * n for n in range(17)]


def _pad(data: bytes) -> bytes:
    return data + _PADDING[16 - (len(data) % 16)]


def _unpad(data: bytes) -> bytes:
    if not data or len(data) % 16:
        raise CryptoError("ciphertext is not a whole number of blocks")
    n = data[-1]
    if n < 1 or n > 16 or data[-n:] != bytes([n]) * n:
        raise CryptoError("bad padding")
    return data[:-n]


class SessionCipher:
    """AES-128-CBC with the session's key and static IV, as WuKongIM uses it."""

    __slots__ = ("key", "iv", "_algo", "_mode", "_enc", "_chain", "_d_iv", "_dec", "_dchain", "_iv_int")

    def __init__(self, key: bytes, iv: bytes) -> None:
        if len(key) != 16 or len(iv) != 16:
            raise CryptoError("AES key and IV must be 16 bytes")
        self.key = key
        self.iv = iv
        self._algo = algorithms.AES(key)
        self._mode = modes.CBC(iv)
        # One CBC encryptor for the whole session (building one per message costs more than
        # the encryption). Its chaining value after a message is that message's last
        # ciphertext block; feeding first the block D(IV) XOR chain makes the chaining
        # value IV again, so each message is encrypted exactly as by a fresh encryptor.
        self._enc = Cipher(self._algo, self._mode).encryptor()
        self._chain = iv
        self._d_iv = int.from_bytes(Cipher(self._algo, modes.ECB()).decryptor().update(iv), "big")
        # One CBC decryptor too, made at the first SEND (an idle connection holds none): it XORs
        # a message's first block with the previous message's last ciphertext block instead of
        # the IV, which ``decrypt`` undoes.
        self._dec = None
        self._dchain = iv
        self._iv_int = int.from_bytes(iv, "big")

    @classmethod
    def from_salt(cls, key: bytes, salt: str) -> SessionCipher:
        return cls(key, salt.encode()[:16])

    def _raw_encrypt(self, plaintext: bytes) -> bytes:
        """AES-128-CBC-PKCS7 with the session IV (as a fresh encryptor would produce it)."""
        chain = self._chain
        if chain == self.iv:
            out = self._enc.update(_pad(plaintext))
        else:
            reset = (self._d_iv ^ int.from_bytes(chain, "big")).to_bytes(16, "big")
            out = self._enc.update(reset + _pad(plaintext))[16:]
        self._chain = out[-16:]
        return out

    def encrypt(self, plaintext: bytes) -> bytes:
        """Wire payload: base64 text (as bytes) of the AES-CBC ciphertext."""
        return base64.b64encode(self._raw_encrypt(plaintext))

    def decrypt(self, wire: bytes) -> bytes:
        """Plaintext from a wire payload; CryptoError if it is not ours."""
        try:
            raw = base64.b64decode(wire, validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("payload is not base64") from None
        if not raw or len(raw) % 16:
            raise CryptoError("payload is not a whole number of AES blocks")
        if self._dec is None:
            self._dec = Cipher(self._algo, self._mode).decryptor()
        out = self._dec.update(raw)
        chain, self._dchain = self._dchain, raw[-16:]
        if chain != self.iv:
            first = int.from_bytes(out[:16], "big") ^ int.from_bytes(chain, "big") ^ self._iv_int
            out = first.to_bytes(16, "big") + out[16:]
        return _unpad(out)

    def msg_key(self, sign: bytes) -> str:
        return hashlib.md5(base64.b64encode(self._raw_encrypt(sign))).hexdigest()

    def send_msg_key(self, client_seq: int, client_msg_no: str, channel_id: str, channel_type: int,
                     payload: bytes) -> str:
        sign = f"{client_seq}{client_msg_no}{channel_id}{channel_type}".encode() + payload
        return self.msg_key(sign)

    def recv_msg_key(self, message_id: int, message_seq: int, client_msg_no: str, timestamp: int,
                     from_uid: str, channel_id: str, channel_type: int, payload: bytes) -> str:
        return self.msg_key(recv_sign_prefix(message_id, message_seq, client_msg_no, timestamp, from_uid, channel_id,
                                             channel_type) + payload)


def recv_sign_prefix(message_id: int, message_seq: int, client_msg_no: str, timestamp: int, from_uid: str,
                     channel_id: str, channel_type: int) -> bytes:
    """The part of a RECV's sign string before the encrypted payload (the same for every recipient)."""
    return f"{message_id}{message_seq}{client_msg_no}{timestamp}{from_uid}{channel_id}{channel_type}".encode()


def client_key_pair(private_bytes: bytes | None = None) -> tuple[X25519PrivateKey, str]:
    """A client key pair (our own test client uses the same primitive as the server)."""
    return new_server_key(private_bytes)
