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


PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "IT", "ES", "NL", "AU")


def _phone(rng: random.Random) -> str:
    """A valid phone number of a random country, written as people write it there, or internationally."""
    import phonenumbers
    from phonenumbers import PhoneNumberFormat, PhoneNumberType

    region = rng.choice(PHONE_REGIONS)
    example = phonenumbers.example_number_for_type(region, rng.choice([PhoneNumberType.MOBILE,
                                                                       PhoneNumberType.FIXED_LINE]))
    number = example
    national = phonenumbers.national_significant_number(example)  # keeps Italy's leading zero
    for _ in range(50):
        varied = phonenumbers.parse(national[:-4] + "".join(rng.choice(string.digits) for _ in range(4)), region)
        if phonenumbers.is_valid_number(varied):
            number = varied
            break
    # National formats where a trunk prefix or a bracketed area code tells them (see flywheel.redact); Spain's
    # and Italy's national formats have neither, and are planted as they are written abroad.
    styles = [PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164]
    if region not in ("ES", "IT", "NL", "AU"):
        styles.append(PhoneNumberFormat.NATIONAL)
    style = rng.choice(styles)
    return phonenumbers.format_number(number, style)


def _iban(rng: random.Random) -> str:
    country, bban = rng.choice([("DE", 18), ("GB", None), ("FR", 23), ("NL", None), ("ES", 20)])
    if country == "GB":
        body = "WEST" + "".join(rng.choice(string.digits) for _ in range(14))
    elif country == "NL":
        body = "ABNA" + "".join(rng.choice(string.digits) for _ in range(10))
    else:
        body = "".join(rng.choice(string.digits) for _ in range(bban))
    check = 98 - int("".join(str(int(c, 36)) for c in body + country + "00")) % 97
    compact = f"{country}{check:02d}{body}"
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4)) if rng.random() < 0.5 else compact


def planted(rng: random.Random) -> tuple[str, str, str]:
    """(kind, secret, placeholder) drawn at random, in the shapes these things have in the wild."""
    kind = rng.choice(["email", "email_spelled", "phone", "card", "iban", "ssn", "ipv4", "ipv6", "ipv6_short",
                       "openai", "anthropic", "aws", "aws_secret", "aws_secret_bare", "aws_secret_json", "github",
                       "slack", "slack_webhook", "jwt", "private_key", "private_key_cut", "bearer", "url_password",
                       "redis_password", "password"])
    if kind == "email":
        user = rng.choice(["john.doe", "a_b+tag", "mary", "ops-team", "x1"])
        return kind, f"{user}{rng.randint(1, 999)}@{rng.choice(['example.com', 'mail.co.uk', 'corp.io'])}", "EMAIL"
    if kind == "email_spelled":
        user = rng.choice(["alice", "bob.smith", "ops"])
        return kind, f"{user}{rng.randint(1, 99)} at {rng.choice(['example', 'corp'])} dot com", "EMAIL"
    if kind == "phone":
        return kind, _phone(rng), "PHONE"
    if kind == "card":
        prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("34", 15), ("6011", 16),
                                     ("2221", 16), ("3530", 16)])
        number = _luhn_complete(prefix, length, rng)
        if rng.random() < 0.5:
            number = " ".join(number[i:i + 4] for i in range(0, len(number), 4)) if length == 16 else \
                f"{number[:4]} {number[4:10]} {number[10:]}"
        return kind, number, "CREDIT_CARD"
    if kind == "iban":
        return kind, _iban(rng), "IBAN"
    if kind == "ssn":
        return kind, f"{rng.randint(1, 665):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}", "SSN"
    if kind == "ipv4":
        return kind, ".".join(str(rng.randint(1, 254)) for _ in range(4)), "IP_ADDRESS"
    if kind == "ipv6":
        return kind, ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8)), "IP_ADDRESS"
    if kind == "ipv6_short":
        return kind, f"2001:db8::{rng.randint(1, 65535):x}:{rng.randint(4096, 65535):x}", "IP_ADDRESS"
    if kind == "openai":
        return kind, rng.choice(["sk-", "sk-proj-"]) + _token(rng, 48, string.ascii_letters + string.digits + "_-"), \
            "API_KEY"
    if kind == "anthropic":
        return kind, "sk-ant-api03-" + _token(rng, 80, string.ascii_letters + string.digits + "_-"), "API_KEY"
    if kind == "aws":
        return kind, "AKIA" + _token(rng, 16, string.ascii_uppercase + string.digits), "API_KEY"
    if kind in ("aws_secret", "aws_secret_bare", "aws_secret_json"):
        return kind, _token(rng, 40, string.ascii_letters + string.digits + "/+"), "AWS_SECRET"
    if kind == "github":
        return kind, "ghp_" + _token(rng, 36), "API_KEY"
    if kind == "slack":
        return kind, f"xoxb-{rng.randint(10**11, 10**12)}-{rng.randint(10**11, 10**12)}-{_token(rng, 24)}", "API_KEY"
    if kind == "slack_webhook":
        return kind, f"https://hooks.slack.com/services/T{_token(rng, 8)}/B{_token(rng, 8)}/{_token(rng, 24)}", \
            "API_KEY"
    if kind == "jwt":
        signature = _token(rng, 43, string.ascii_letters + "_-")
        return kind, "eyJhbGciOiJIUzI1NiJ9.eyJ" + _token(rng, 30) + "." + signature, "JWT"
    if kind == "private_key":
        return kind, "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(_token(rng, 64) for _ in range(4)) \
            + "\n-----END RSA PRIVATE KEY-----", "PRIVATE_KEY"
    if kind == "private_key_cut":
        return kind, "-----BEGIN PRIVATE KEY-----\n" + "\n".join(_token(rng, 64) for _ in range(3)), "PRIVATE_KEY"
    if kind == "bearer":
        return kind, _token(rng, 32, string.ascii_letters + string.digits + "-._"), "BEARER_TOKEN"
    if kind == "password":
        return kind, _token(rng, 10, string.ascii_letters + string.digits) + rng.choice("!$%#9"), "PASSWORD"
    return kind, _token(rng, 12, string.ascii_letters + string.digits + "!$%"), "PASSWORD"


def in_context(kind: str, secret: str, rng: random.Random) -> str:
    if kind == "aws_secret":
        return f"export AWS_SECRET_ACCESS_KEY={secret}\nthen run the job"
    if kind == "aws_secret_json":
        return '{"AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "' + secret + '"}'
    if kind == "bearer":
        return f"curl -H 'Authorization: Bearer {secret}' https://api.example.com/v1"
    if kind == "url_password":
        return f"connect with postgres://admin:{secret}@db.internal:5432/app please"
    if kind == "redis_password":
        return f"REDIS_URL=redis://:{secret}@cache.internal:6379/0"
    if kind == "password":
        return rng.choice(["my password: {}", "password={} (do not share)", "login with pwd {}", '"passwd": "{}"']
                          ).format(secret).replace("pwd ", "pwd: ")
    return rng.choice(["My {} is {}, can you help?", "{}: {}.", "see {} ({}) for details", "{} -> {}\nthanks"]) \
        .format(rng.choice(["contact", "value", "note", "details"]), secret)


def test_planted_secrets_and_personal_data_are_found_per_type():
    rng = random.Random(2026)
    planted_by, missed_by, misses = Counter(), Counter(), []
    for _ in range(10_000):
        kind, secret, placeholder = planted(rng)
        text = in_context(kind, secret, rng)
        out = redact(text)
        planted_by[kind] += 1
        if secret in out or f"[{placeholder}]" not in out:
            missed_by[kind] += 1
            misses.append((kind, text, out))
    recall = {kind: 1 - missed_by[kind] / n for kind, n in planted_by.items()}
    print("redaction recall per type on 10,000 planted items:", {k: round(v, 4) for k, v in sorted(recall.items())})
    assert len(recall) == 25 and min(recall.values()) >= 0.99, (missed_by, misses[:5])


def test_only_the_password_in_a_url_and_the_token_after_bearer_are_replaced():
    assert redact("postgres://admin:hunter2@db:5432/x") == "postgres://admin:[PASSWORD]@db:5432/x"
    assert redact("Authorization: Bearer abcdefghijklmnop1234") == "Authorization: Bearer [BEARER_TOKEN]"


@pytest.mark.parametrize("text", [
    "2^45 = 35184372088832, and 0000000000000000 is zero",
    '<path transform="rotate(45 150 250)"/> and [[1, 0, 0], [0, 1, 0]]',
    "See doi:10.1016/4111111111111111 and the primes 2 3 5 7 11 13 17 19 23 29 31 37 41",
    "20000 * 0.493039 = 9860.78; the pass costs $2.20",
    'password = input("Password: "); api_key = os.environ["API_KEY"]',
    "The light blinks 255 times in 5 minutes; 459 / 51 = 9.",
    "Order 1234567812345678 was shipped",  # 16 digits that fail the Luhn check
    "Version 1.2.3.4.5 and 10.0.0.256 are not addresses",
    "She paid $1,234.56 on 2024-01-15 at 10:30.",
])
def test_look_alikes_are_left_alone(text):
    assert redact(text) == text


def test_false_positive_rate_on_clean_real_text(zeroeval_path):
    texts: set[str] = set()  # each prompt was put to 11 models: counted once, not 11 times
    with gzip.open(zeroeval_path) as handle:
        for line in handle:
            record = orjson.loads(line)
            texts |= {record["messages"][-1]["content"], record["response"] or ""}
    counts: Counter = Counter()
    flagged = sum(redact(t, counts) != t for t in texts)
    rate = flagged / len(texts)
    print(f"false-positive rate on {len(texts):,} clean texts: {rate:.5f} ({flagged} texts; {dict(counts)})")
    assert all(n <= len(texts) / 10_000 for n in counts.values()), counts  # at most 1 in 10,000 per type


def test_numbers_code_and_structure_are_left_alone_per_type():
    from tests.support.clean_corpus import clean_texts

    texts = clean_texts(20_000, seed=7)
    counts: Counter = Counter()
    changed = [t for t in texts if redact(t, counts) != t]
    print(f"false positives on 20,000 texts of numbers, code and structure: {dict(counts)}")
    assert all(n <= 2 for n in counts.values()), changed[:5]  # at most 1 in 10,000 per type


def test_counts_are_kept_per_detector():
    counts: Counter = Counter()
    redact("mail a@b.io or c@d.org, call +1 415 555 0100", counts)
    assert counts == Counter({"email": 2, "phone": 1})


def test_secrets_planted_in_every_text_field_never_leave_the_raw_layer(tmp_path):
    """Secrets in every field of the contract that holds text: after the main job (staging, dedup, signals,
    marts, releases) and a labeling sample, no table or view outside `raw`, no queued record and no released file
    holds one."""
    import json as json_

    import duckdb

    from flywheel import warehouse
    from flywheel.labeling import sampling
    from flywheel.labeling.datasets import RESPONSE_REVIEW, load_sampling, load_spec
    from flywheel.settings import Home
    from pipelines.launch import run_main_job
    from tests.factories import feedback, interaction, write_lines

    secrets = {"email": "jane.roe@example.org", "phone": "+49 30 12345678", "key": "sk-proj-" + "Ab3" * 12,
               "card": "4111 1111 1111 1111", "ssn": "078-05-1120"}
    s = list(secrets.values())
    events = []
    for i in range(40):
        secret = s[i % len(s)]
        call = {"id": f"call_{i}", "type": "function",
                "function": {"name": "crm", "arguments": json_.dumps({"who": secret})}}
        events.append(interaction(
            f"plant-{i}", model=("gpt-4o", "gpt-4o-mini")[i % 2], provider=f"prov {secret}", app_id=f"app {secret}",
            messages=[{"role": "system", "content": f"Staff contact {secret}"},
                      {"role": "user", "name": f"user {secret}", "content": f"I am {secret}, question {i // 2}"},
                      {"role": "assistant", "content": None, "tool_calls": [call], "refusal": f"no {secret}"},
                      {"role": "tool", "tool_call_id": f"call_{i}", "content": f"found {secret}"},
                      {"role": "user", "content": f"and then? ({i // 2})"}],
            response={"role": "assistant", "content": f"Write to {secret}", "refusal": f"not {secret}",
                      "tool_calls": [call]},
            tools=[{"type": "function", "function": {"name": "crm", "description": f"owner {secret}"}}],
            tags=[f"tag {secret}"], metadata={"note": f"from {secret}", f"key {secret}": 1},
            status=("ok", "error")[i % 5 == 0], error=f"failed for {secret}" if i % 5 == 0 else None))
        events.append(feedback(f"plant-{i}", feedback_type="correction", correction=f"say {secret}", thumb=None,
                               comment=f"by {secret}", source=f"user {secret}"))
    home = Home(tmp_path / "home").ensure()
    write_lines(home.landing / "planted.jsonl", events)
    assert run_main_job(home, labeling=False).success
    with warehouse.session(home) as con:
        sampling.sample_response_review(con, load_spec(RESPONSE_REVIEW), load_sampling()["response_review"], budget=20)
        assert con.execute("SELECT count(*) FROM raw.interactions").fetchone()[0] == 40
        assert con.execute("SELECT count(*) FROM labeling.queue").fetchone()[0] > 0
        # the planted values reached every layer, as placeholders
        assert con.execute("""SELECT count(*) FROM staging.stg_interactions WHERE list_contains(tags, 'tag [EMAIL]')
                              AND metadata::VARCHAR LIKE '%key [%' AND messages[2].name LIKE 'user [%'""").fetchone()[0]
        relations = con.execute("""
            SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name <> 'raw'
            UNION ALL SELECT schema_name, view_name FROM duckdb_views()
            WHERE NOT internal AND schema_name NOT IN ('raw', 'information_schema', 'pg_catalog')""").fetchall()
        assert len(relations) > 15
        leaks = []
        for schema, name in relations:
            text = con.execute(f'SELECT string_agg(t::VARCHAR, chr(10)) FROM "{schema}"."{name}" t').fetchone()[0]
            leaks += [(f"{schema}.{name}", kind) for kind, secret in secrets.items()
                      if text and (secret in text or secret.replace(" ", "") in text)]
    for path in (p for p in home.releases.rglob("*") if p.is_file() and p.suffix not in (".npz", ".png")):
        text = (duckdb.sql(f"SELECT string_agg(t::VARCHAR, chr(10)) FROM read_parquet('{path}') t").fetchone()[0]
                if path.suffix == ".parquet" else path.read_text())
        leaks += [(str(path), kind) for kind, secret in secrets.items() if text and secret in text]
    assert leaks == []
