from __future__ import annotations

import pytest

from chartkeeper.security import passwords
from chartkeeper.security.passwords import PasswordPolicyError


def test_too_short_password_is_refused_with_a_clear_sentence() -> None:
    with pytest.raises(PasswordPolicyError, match=r"at least 12 characters \(it has 11\)"):
        passwords.hash_password("x" * 11)


@pytest.mark.parametrize("bad", ["", " " * 12, "y" * 1025])
def test_other_bad_passwords(bad: str) -> None:
    with pytest.raises(PasswordPolicyError):
        passwords.hash_password(bad)


def test_argon2id_hash_verifies_and_is_salted() -> None:
    pw = "twelve chars ok"
    h1 = passwords.hash_password(pw)
    h2 = passwords.hash_password(pw)
    assert h1.startswith("$argon2id$")
    assert h1 != h2
    assert pw not in h1
    assert passwords.verify_password(h1, pw)
    assert not passwords.verify_password(h1, pw + "!")
    assert not passwords.verify_password("not a hash", pw)
    assert not passwords.needs_rehash(h1)
