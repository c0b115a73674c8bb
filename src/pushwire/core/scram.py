"""SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash): the math and the message formats, no I/O.

Why SCRAM beside argon2 passwords: the password never crosses the wire (not even inside
TLS), the client proves it knows it, and the server proves it holds the user's verifier
(mutual authentication). The server keeps, per user, what RFC 5802 calls the verifier:

    SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)
    StoredKey      = SHA-256(HMAC(SaltedPassword, "Client Key"))
    ServerKey      = HMAC(SaltedPassword, "Server Key")

It cannot be derived from an argon2 hash, so it is made when a password is set (see
`ScramCredentials.make`), and a login costs the server a few HMACs only: PBKDF2 runs on
the client. Stored as one string in PostgreSQL's layout:
`SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.

`ScramServer` is one exchange on the server side (client-first -> server-first,
client-final -> server-final); `ScramClient` is the other side, for the tests and the
command-line clients. Malformed input raises `ScramError`, never anything else.

Passwords are prepared with SASLprep (RFC 4013) as RFC 5802 asks; a password SASLprep
refuses (e.g. with unassigned code points) is used as its raw UTF-8 bytes, as PostgreSQL
does, on both sides, so such a password still works with a client doing the same.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass
from typing import Final

MECHANISM: Final = "SCRAM-SHA-256"
# RFC 7677 section 4: "the hash iteration-count ... SHOULD be at least 4096"
MIN_ITERATIONS: Final = 4096
# a verifier with more iterations than this is refused: the client would spend minutes
MAX_ITERATIONS: Final = 10_000_000
SALT_BYTES: Final = 16
NONCE_BYTES: Final = 18  # 24 printable characters once base64-encoded
_MAX_MESSAGE: Final = 4096  # bytes; a real SCRAM message is ~100-200 bytes
_HASH: Final = "sha256"
_KEY_BYTES: Final = 32


class ScramError(ValueError):
    """A SCRAM message is malformed or breaks the protocol (not: a wrong password)."""


# -- SASLprep (RFC 4013) -------------------------------------------------------------------


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep of a password; ValueError when it contains what is prohibited."""
    # mapping: non-ASCII spaces to SPACE, "commonly mapped to nothing" removed
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared:
        return prepared
    for c in prepared:
        if (
            stringprep.in_table_c12(c)
            or stringprep.in_table_c21_c22(c)
            or stringprep.in_table_c3(c)
            or stringprep.in_table_c4(c)
            or stringprep.in_table_c5(c)
            or stringprep.in_table_c6(c)
            or stringprep.in_table_c7(c)
            or stringprep.in_table_c8(c)
            or stringprep.in_table_c9(c)
            or stringprep.in_table_a1(c)
        ):
            raise ValueError("prohibited character in password")
    # bidi (RFC 3454 section 6)
    if any(stringprep.in_table_d1(c) for c in prepared):
        if any(stringprep.in_table_d2(c) for c in prepared):
            raise ValueError("mixed bidirectional text in password")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise ValueError("bidirectional password must start and end with RandALCat")
    return prepared


def normalize_password(password: str | bytes) -> bytes:
    """The bytes PBKDF2 gets: SASLprep'd UTF-8, or the raw bytes when SASLprep refuses."""
    if isinstance(password, bytes):
        try:
            text = password.decode("utf-8")
        except UnicodeDecodeError:
            return password
    else:
        text = password
    try:
        return saslprep(text).encode("utf-8")
    except ValueError:
        return text.encode("utf-8")


# -- the math -----------------------------------------------------------------------------


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, _HASH).digest()


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def salted_password(password: str | bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(_HASH, normalize_password(password), salt, iterations)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ScramError(f"{what} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """A user's SCRAM-SHA-256 verifier (what the server stores instead of the password)."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def make(
        cls, password: str | bytes, iterations: int = MIN_ITERATIONS, salt: bytes | None = None
    ) -> ScramCredentials:
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise ValueError(f"SCRAM iterations must be {MIN_ITERATIONS} to {MAX_ITERATIONS}")
        salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
        salted = salted_password(password, salt, iterations)
        return cls(
            iterations,
            salt,
            _h(_hmac(salted, b"Client Key")),
            _hmac(salted, b"Server Key"),
        )

    def encode(self) -> str:
        return (
            f"{MECHANISM}${self.iterations}:{_b64(self.salt)}"
            f"${_b64(self.stored_key)}:{_b64(self.server_key)}"
        )

    @classmethod
    def parse(cls, text: str) -> ScramCredentials:
        """The inverse of `encode`; ScramError for anything else."""
        parts = text.split("$")
        if len(parts) != 3 or parts[0] != MECHANISM:
            raise ScramError("not a SCRAM-SHA-256 verifier")
        iterations, _, salt = parts[1].partition(":")
        stored, _, server = parts[2].partition(":")
        if not iterations.isdigit() or not MIN_ITERATIONS <= int(iterations) <= MAX_ITERATIONS:
            raise ScramError("bad iteration count in SCRAM verifier")
        creds = cls(
            int(iterations),
            _unb64(salt, "salt"),
            _unb64(stored, "StoredKey"),
            _unb64(server, "ServerKey"),
        )
        if len(creds.stored_key) != _KEY_BYTES or len(creds.server_key) != _KEY_BYTES:
            raise ScramError("bad key length in SCRAM verifier")
        return creds

    @classmethod
    def mock(cls, username: str, secret: bytes, iterations: int) -> ScramCredentials:
        """Stable fake credentials for a user that does not exist (RFC 5802 section 5.1):
        the exchange runs to its end and fails like a wrong password, so it does not tell
        which usernames exist. No password matches (the keys are not from PBKDF2)."""
        seed = _hmac(secret, b"scram-mock\0" + username.encode("utf-8", "replace"))
        return cls(
            iterations,
            seed[:SALT_BYTES],
            _hmac(seed, b"stored"),
            _hmac(seed, b"server"),
        )


# -- message parsing (RFC 5802 section 7) --------------------------------------------------


def _attributes(message: str, what: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha() or not part[0].isascii():
            raise ScramError(f"malformed attribute in {what}")
        out.append((part[0], part[2:]))
    return out


def _decode_saslname(name: str) -> str:
    """`=2C` is ',' and `=3D` is '='; any other '=' is malformed."""
    out: list[str] = []
    i = 0
    while i < len(name):
        c = name[i]
        if c == "=":
            code = name[i + 1 : i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise ScramError("malformed username escape")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def encode_saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _printable_nonce(nonce: str) -> bool:
    # RFC 5802: printable ASCII except ','
    return bool(nonce) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce)


def _text(data: bytes, what: str) -> str:
    if len(data) > _MAX_MESSAGE:
        raise ScramError(f"{what} is too long")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError(f"{what} is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class ClientFirst:
    gs2_header: str  # e.g. "n,,": echoed base64-encoded in the client-final's c=
    username: str
    nonce: str
    bare: str  # client-first-message-bare, part of the AuthMessage


def parse_client_first(data: bytes) -> ClientFirst:
    text = _text(data, "client-first-message")
    cbind, sep1, rest = text.partition(",")
    authzid, sep2, bare = rest.partition(",")
    if not sep1 or not sep2:
        raise ScramError("client-first-message has no GS2 header")
    if cbind.startswith("p="):
        raise ScramError("channel binding is not supported (use SCRAM-SHA-256, not -PLUS)")
    if cbind not in ("n", "y"):
        raise ScramError("bad channel binding flag")
    attrs = _attributes(bare, "client-first-message")
    if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
        raise ScramError("client-first-message must start with n= and r=")
    if any(k == "m" for k, _ in attrs):
        raise ScramError("mandatory extensions are not supported")
    username = _decode_saslname(attrs[0][1])
    if not username:
        raise ScramError("empty username")
    if authzid and (not authzid.startswith("a=") or _decode_saslname(authzid[2:]) != username):
        raise ScramError("an authorization identity other than the username is not supported")
    nonce = attrs[1][1]
    if not _printable_nonce(nonce):
        raise ScramError("bad client nonce")
    return ClientFirst(f"{cbind},{authzid},", username, nonce, bare)


@dataclass(frozen=True, slots=True)
class ClientFinal:
    channel_binding: str  # base64 of the GS2 header
    nonce: str
    proof: bytes
    without_proof: str  # client-final-message-without-proof, part of the AuthMessage


def parse_client_final(data: bytes) -> ClientFinal:
    text = _text(data, "client-final-message")
    without_proof, sep, proof = text.rpartition(",p=")
    if not sep:
        raise ScramError("client-final-message has no proof")
    attrs = _attributes(without_proof, "client-final-message")
    if len(attrs) < 2 or attrs[0][0] != "c" or attrs[1][0] != "r":
        raise ScramError("client-final-message must start with c= and r=")
    if any(k in ("m", "p") for k, _ in attrs[2:]):
        raise ScramError("unexpected attribute in client-final-message")
    return ClientFinal(attrs[0][1], attrs[1][1], _unb64(proof, "proof"), without_proof)


# -- the server's side of one exchange ------------------------------------------------------


class ScramServer:
    """One exchange: `first(client_first, credentials)` -> server-first-message;
    `final(client_final)` -> (proof ok, server-final-message). Raises ScramError on
    malformed input or a message out of turn."""

    def __init__(
        self,
        client_first: ClientFirst,
        credentials: ScramCredentials,
        server_nonce: str | None = None,  # tests only: a fixed nonce (RFC test vectors)
    ) -> None:
        self.client_first = client_first
        self.credentials = credentials
        self.nonce = client_first.nonce + (server_nonce or secrets.token_urlsafe(NONCE_BYTES))
        self.server_first = f"r={self.nonce},s={_b64(credentials.salt)},i={credentials.iterations}"
        self._done = False

    def server_first_message(self) -> bytes:
        return self.server_first.encode("ascii")

    def final(self, data: bytes) -> tuple[bool, bytes]:
        """(True, server-final `v=...`) when the proof is right; (False, `e=...`) when not."""
        if self._done:
            raise ScramError("the exchange is over")
        self._done = True
        msg = parse_client_final(data)
        expected_cb = _b64(self.client_first.gs2_header.encode("utf-8"))
        if not hmac.compare_digest(msg.channel_binding.encode(), expected_cb.encode()):
            raise ScramError("channel binding does not match the client-first-message")
        if not hmac.compare_digest(msg.nonce.encode(), self.nonce.encode()):
            raise ScramError("nonce does not match")
        if len(msg.proof) != _KEY_BYTES:
            return False, b"e=invalid-proof"
        auth_message = ",".join(
            (self.client_first.bare, self.server_first, msg.without_proof)
        ).encode("utf-8")
        creds = self.credentials
        client_key = _xor(msg.proof, _hmac(creds.stored_key, auth_message))
        if not hmac.compare_digest(_h(client_key), creds.stored_key):
            return False, b"e=invalid-proof"
        signature = _hmac(creds.server_key, auth_message)
        return True, b"v=" + _b64(signature).encode("ascii")


# -- the client's side (tests, command-line clients) ---------------------------------------


class ScramClient:
    """`first()` -> client-first; `final(server_first)` -> client-final;
    `verify(server_final)` checks the server's signature (ScramError when wrong)."""

    def __init__(self, username: str, password: str | bytes, nonce: str | None = None) -> None:
        self.username = username
        self.password = password
        self.nonce = nonce or secrets.token_urlsafe(NONCE_BYTES)
        self.bare = f"n={encode_saslname(username)},r={self.nonce}"
        self._server_signature: bytes | None = None

    def first(self) -> bytes:
        return ("n,," + self.bare).encode("utf-8")

    def final(self, server_first: bytes) -> bytes:
        text = _text(server_first, "server-first-message")
        attrs = dict(_attributes(text, "server-first-message"))
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise ScramError("server nonce does not extend the client's")
        if not iterations.isdigit() or not MIN_ITERATIONS <= int(iterations) <= MAX_ITERATIONS:
            raise ScramError("bad iteration count from server")
        salted = salted_password(self.password, _unb64(salt, "salt"), int(iterations))
        without_proof = f"c={_b64(b'n,,')},r={nonce}"
        auth_message = ",".join((self.bare, text, without_proof)).encode("utf-8")
        client_key = _hmac(salted, b"Client Key")
        proof = _xor(client_key, _hmac(_h(client_key), auth_message))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def verify(self, server_final: bytes) -> None:
        text = _text(server_final, "server-final-message")
        if text.startswith("e="):
            raise ScramError(f"server refused: {text[2:]}")
        if not text.startswith("v=") or self._server_signature is None:
            raise ScramError("malformed server-final-message")
        if not hmac.compare_digest(_unb64(text[2:], "signature"), self._server_signature):
            raise ScramError("the server's signature is wrong: it does not know the verifier")
