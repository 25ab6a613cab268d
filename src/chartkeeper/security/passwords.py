"""Password rules and argon2id hashing."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 1024

# argon2-cffi's defaults are RFC 9106's low-memory argon2id profile (t=3, m=64 MiB, p=4).
_hasher = PasswordHasher()


class PasswordPolicyError(ValueError):
    """The password breaks a rule; the message says which and how to fix it."""


def check_password_rules(password: str) -> None:
    if not isinstance(password, str):
        raise PasswordPolicyError("The password must be text.")
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"The password is too short: use at least {MIN_LENGTH} characters (it has {len(password)}).")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"The password is too long: use at most {MAX_LENGTH} characters.")
    if not password.strip():
        raise PasswordPolicyError("The password must not be only spaces.")


def hash_password(password: str) -> str:
    """Check the rules, then hash with argon2id (the hash carries its own salt and parameters)."""
    check_password_rules(password)
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


# A real hash to verify against when the user name is unknown, so that timing does not tell
# whether a user exists.
_dummy_hash: str | None = None


def burn_time(password: str) -> None:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("chartkeeper-no-such-user-dummy")
    verify_password(_dummy_hash, password)
