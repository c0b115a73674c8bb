"""SCRAM-SHA-256 math and message parsing (core/scram.py), against RFC 7677's test vector."""

from __future__ import annotations

import base64

import pytest

from pushwire.core.scram import (
    ClientFirst,
    ScramClient,
    ScramCredentials,
    ScramError,
    ScramServer,
    parse_client_final,
    parse_client_first,
    saslprep,
)

# RFC 7677 section 3
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_credentials() -> ScramCredentials:
    return ScramCredentials.make("pencil", 4096, RFC_SALT)


def test_server_side_reproduces_rfc7677() -> None:
    first = parse_client_first(RFC_CLIENT_FIRST)
    assert first.username == "user"
    server = ScramServer(first, rfc_credentials(), server_nonce=RFC_SERVER_NONCE)
    assert server.server_first_message() == RFC_SERVER_FIRST
    assert server.final(RFC_CLIENT_FINAL) == (True, RFC_SERVER_FINAL)


def test_client_side_reproduces_rfc7677() -> None:
    client = ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    assert client.first() == RFC_CLIENT_FIRST
    assert client.final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify(RFC_SERVER_FINAL)  # no error: the server knew the verifier


def test_client_refuses_a_wrong_server_signature() -> None:
    client = ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    client.final(RFC_SERVER_FIRST)
    with pytest.raises(ScramError, match="signature"):
        client.verify(b"v=" + base64.b64encode(b"x" * 32))


def test_wrong_password_fails_without_error() -> None:
    client = ScramClient("user", "not-pencil")
    server = ScramServer(parse_client_first(client.first()), rfc_credentials())
    ok, answer = server.final(client.final(server.server_first_message()))
    assert not ok
    assert answer == b"e=invalid-proof"


def test_round_trip_and_verifier_encoding() -> None:
    creds = ScramCredentials.make("s3cret é", 5000)
    assert ScramCredentials.parse(creds.encode()) == creds
    client = ScramClient("a,b=c", "s3cret é")
    first = parse_client_first(client.first())
    assert first.username == "a,b=c"
    server = ScramServer(first, creds)
    ok, final = server.final(client.final(server.server_first_message()))
    assert ok
    client.verify(final)


def test_mock_credentials_are_stable_and_never_match() -> None:
    a = ScramCredentials.mock("ghost", b"k" * 32, 4096)
    assert a == ScramCredentials.mock("ghost", b"k" * 32, 4096)
    assert a.salt != ScramCredentials.mock("other", b"k" * 32, 4096).salt
    client = ScramClient("ghost", "")
    server = ScramServer(parse_client_first(client.first()), a)
    assert server.final(client.final(server.server_first_message()))[0] is False


def test_saslprep() -> None:
    assert saslprep("I\u00adX") == "IX"  # soft hyphen maps to nothing (RFC 4013 example)
    assert saslprep("\u2168") == "IX"  # NFKC
    assert saslprep("a\u00a0b") == "a b"  # non-ASCII space
    with pytest.raises(ValueError):
        saslprep("\u0007")


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"n,,",
        b"x,,n=user,r=abc",
        b"p=tls-unique,,n=user,r=abc",
        b"n,,r=abc,n=user",
        b"n,,n=user",
        b"n,,n=,r=abc",
        b"n,,n=us=41er,r=abc",
        b"n,,m=ext,n=user,r=abc",
        b"n,a=other,n=user,r=abc",
        b"n,,n=user,r=a,b",
        b"n,,n=user,r=a\x01b",
        b"n,,n=user,r=\xff\xfe",
        b"n,,n=user,r=" + b"a" * 5000,
    ],
)
def test_malformed_client_first_is_a_scram_error(message: bytes) -> None:
    with pytest.raises(ScramError):
        parse_client_first(message)


@pytest.mark.parametrize(
    "message",
    [b"", b"c=biws,r=abc", b"r=abc,c=biws,p=AAAA", b"c=biws,r=abc,p=***", b"c=biws,r=x,m=1,p=AA=="],
)
def test_malformed_client_final_is_a_scram_error(message: bytes) -> None:
    with pytest.raises(ScramError):
        parse_client_final(message)


def test_final_checks_nonce_and_channel_binding() -> None:
    client = ScramClient("user", "pencil")
    first = parse_client_first(client.first())
    server = ScramServer(first, rfc_credentials())
    final = client.final(server.server_first_message())
    with pytest.raises(ScramError, match="nonce"):
        ScramServer(first, rfc_credentials()).final(final)  # another server nonce
    tampered = final.replace(b"c=biws", b"c=eSws")
    with pytest.raises(ScramError, match="channel binding"):
        server.final(tampered)
    with pytest.raises(ScramError, match="over"):
        server.final(final)  # one final per exchange


def test_bad_verifiers_are_refused() -> None:
    for text in ("", "SCRAM-SHA-1$4096:AA==$AA==:AA==", "SCRAM-SHA-256$10:AA==$AA==:AA=="):
        with pytest.raises(ScramError):
            ScramCredentials.parse(text)
    with pytest.raises(ValueError):
        ScramCredentials.make("pw", 1000)


def test_client_first_keeps_gs2_header() -> None:
    assert parse_client_first(b"y,,n=u,r=abc") == ClientFirst("y,,", "u", "abc", "n=u,r=abc")
