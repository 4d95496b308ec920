"""Redaction: planted secrets and personal data are found (recall >= 0.99), clean text is left alone."""

from __future__ import annotations

import gzip
import random
import string
from collections import Counter

import orjson
import pytest

from flywheel.redact import luhn_valid, redact


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if luhn_valid(body + check):
            return body + check
    raise AssertionError


def _token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def planted(rng: random.Random) -> tuple[str, str, str]:
    """(kind, secret, placeholder) drawn at random, in the shapes these things have in the wild."""
    kind = rng.choice(["email", "phone", "card", "ipv4", "ipv6", "openai", "anthropic", "aws", "aws_secret",
                       "github", "slack", "jwt", "private_key", "bearer", "url_password"])
    if kind == "email":
        user = rng.choice(["john.doe", "a_b+tag", "mary", "ops-team", "x1"])
        return kind, f"{user}{rng.randint(1, 999)}@{rng.choice(['example.com', 'mail.co.uk', 'corp.io'])}", "EMAIL"
    if kind == "phone":
        n = [rng.randint(200, 999), rng.randint(200, 999), rng.randint(1000, 9999)]
        shape = rng.choice(["({}) {}-{}", "{}-{}-{}", "+1 {} {} {}", "+44 {} {} {}", "{}.{}.{}"])
        return kind, shape.format(*n), "PHONE"
    if kind == "card":
        number = _luhn_complete(rng.choice(["4", "51", "37", "6011"]), rng.choice([15, 16]), rng)
        if rng.random() < 0.5:
            number = " ".join(number[i:i + 4] for i in range(0, len(number), 4))
        return kind, number, "CREDIT_CARD"
    if kind == "ipv4":
        return kind, ".".join(str(rng.randint(1, 254)) for _ in range(4)), "IP_ADDRESS"
    if kind == "ipv6":
        return kind, ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8)), "IP_ADDRESS"
    if kind == "openai":
        return kind, rng.choice(["sk-", "sk-proj-"]) + _token(rng, 48, string.ascii_letters + string.digits + "_-"), \
            "API_KEY"
    if kind == "anthropic":
        return kind, "sk-ant-api03-" + _token(rng, 80, string.ascii_letters + string.digits + "_-"), "API_KEY"
    if kind == "aws":
        return kind, "AKIA" + _token(rng, 16, string.ascii_uppercase + string.digits), "API_KEY"
    if kind == "aws_secret":
        return kind, _token(rng, 40, string.ascii_letters + string.digits + "/+"), "AWS_SECRET"
    if kind == "github":
        return kind, "ghp_" + _token(rng, 36), "API_KEY"
    if kind == "slack":
        return kind, f"xoxb-{rng.randint(10**11, 10**12)}-{rng.randint(10**11, 10**12)}-{_token(rng, 24)}", "API_KEY"
    if kind == "jwt":
        signature = _token(rng, 43, string.ascii_letters + "_-")
        return kind, "eyJhbGciOiJIUzI1NiJ9.eyJ" + _token(rng, 30) + "." + signature, "JWT"
    if kind == "private_key":
        return kind, "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(_token(rng, 64) for _ in range(4)) \
            + "\n-----END RSA PRIVATE KEY-----", "PRIVATE_KEY"
    if kind == "bearer":
        return kind, _token(rng, 32, string.ascii_letters + string.digits + "-._"), "BEARER_TOKEN"
    return kind, _token(rng, 12, string.ascii_letters + string.digits + "!$%"), "PASSWORD"


def in_context(kind: str, secret: str, rng: random.Random) -> str:
    if kind == "aws_secret":
        return f"export AWS_SECRET_ACCESS_KEY={secret}\nthen run the job"
    if kind == "bearer":
        return f"curl -H 'Authorization: Bearer {secret}' https://api.example.com/v1"
    if kind == "url_password":
        return f"connect with postgres://admin:{secret}@db.internal:5432/app please"
    return rng.choice(["My {} is {}, can you help?", "{}: {}.", "see {} ({}) for details", "{} -> {}\nthanks"]) \
        .format(rng.choice(["contact", "value", "key", "note"]), secret)


def test_planted_secrets_and_personal_data_are_found():
    rng = random.Random(2026)
    misses, found = [], Counter()
    for _ in range(3_000):
        kind, secret, placeholder = planted(rng)
        text = in_context(kind, secret, rng)
        out = redact(text)
        if secret in out or f"[{placeholder}]" not in out:
            misses.append((kind, text, out))
        else:
            found[kind] += 1
    recall = 1 - len(misses) / 3_000
    print(f"redaction recall on 3,000 planted items: {recall:.4f}; misses: {Counter(m[0] for m in misses)}")
    assert recall >= 0.99, misses[:5]
    assert len(found) == 15  # every kind was planted and found


def test_only_the_password_in_a_url_and_the_token_after_bearer_are_replaced():
    assert redact("postgres://admin:hunter2@db:5432/x") == "postgres://admin:[PASSWORD]@db:5432/x"
    assert redact("Authorization: Bearer abcdefghijklmnop1234") == "Authorization: Bearer [BEARER_TOKEN]"


@pytest.mark.parametrize("text", [
    "The light blinks 255 times in 5 minutes; 459 / 51 = 9.",
    "Order 1234567812345678 was shipped",  # 16 digits that fail the Luhn check
    "Version 1.2.3.4.5 and 10.0.0.256 are not addresses",
    "She paid $1,234.56 on 2024-01-15 at 10:30.",
])
def test_look_alikes_are_left_alone(text):
    assert redact(text) == text


def test_false_positive_rate_on_clean_real_text(zeroeval_path):
    texts = []
    with gzip.open(zeroeval_path) as handle:
        for line in handle:
            record = orjson.loads(line)
            texts += [record["messages"][-1]["content"], record["response"] or ""]
    counts: Counter = Counter()
    flagged = sum(redact(t, counts) != t for t in texts)
    rate = flagged / len(texts)
    print(f"false-positive rate on {len(texts):,} clean texts: {rate:.5f} ({flagged} texts; {dict(counts)})")
    assert rate <= 0.001


def test_counts_are_kept_per_detector():
    counts: Counter = Counter()
    redact("mail a@b.io or c@d.org, call +1 415 555 0100", counts)
    assert counts == Counter({"email": 2, "phone": 1})
