"""Bearer tokens signed with a private key are checked with the configured public key."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr

from orchestrator.api.auth import verify
from orchestrator.api.problems import ApiError
from orchestrator.settings import load_settings

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def private_key(algorithm: str) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(algorithm: str, key: PrivateKey | None = None) -> str:
    public = (key or private_key(algorithm)).public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_token_signed_with_the_private_key_names_its_user(algorithm: str) -> None:
    key = private_key(algorithm)
    settings = load_settings(
        jwt_algorithm=algorithm, jwt_secret=SecretStr(public_pem(algorithm, key))
    )
    claims = {"sub": "user-7", "exp": int(time.time()) + 60}
    assert verify(settings, jwt.encode(claims, key, algorithm)).user_id == "user-7"
    with pytest.raises(ApiError):
        verify(settings, jwt.encode(claims, private_key(algorithm), algorithm))
