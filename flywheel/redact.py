"""Redaction of secrets and personal data, with typed placeholders.

Before any text leaves for labeling or publishing it passes here: e-mail addresses, phone numbers, payment
cards (Luhn-checked), IP addresses, API keys and tokens (OpenAI, Anthropic, AWS, GitHub, Slack, JWTs,
private key blocks, bearer tokens) and passwords in URLs become `[EMAIL]`, `[PHONE]`, `[CREDIT_CARD]`,
`[IP_ADDRESS]`, `[API_KEY]`, `[AWS_SECRET]`, `[JWT]`, `[PRIVATE_KEY]`, `[BEARER_TOKEN]`, `[PASSWORD]`.

All detectors are one compiled alternation, so a text is scanned once. Detectors are ordered from the
most specific (a private key block, a JWT) to the most generic (a phone number), so that a token is never
half-matched by a looser pattern first.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

PLACEHOLDERS = ("PRIVATE_KEY", "JWT", "API_KEY", "AWS_SECRET", "BEARER_TOKEN", "PASSWORD", "EMAIL", "CREDIT_CARD",
                "IP_ADDRESS", "PHONE")
PLACEHOLDER_PATTERN = r"\[(" + "|".join(PLACEHOLDERS) + r")\]"


@dataclass(frozen=True)
class Detector:
    name: str  # what was found (counted per partition)
    placeholder: str
    pattern: str
    check: Callable[[str], bool] | None = None
    group: str | None = None  # replace only this named group (e.g. the password inside a URL)


def luhn_valid(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return total % 10 == 0


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
DETECTORS: tuple[Detector, ...] = (
    Detector("private_key", "PRIVATE_KEY",
             r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]+?-----END (?:[A-Z]+ )*PRIVATE KEY-----"),
    Detector("jwt", "JWT", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    Detector("anthropic_key", "API_KEY", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    Detector("openai_key", "API_KEY", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    Detector("github_token", "API_KEY", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
    Detector("slack_token", "API_KEY", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    Detector("aws_access_key", "API_KEY", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    Detector("aws_secret", "AWS_SECRET",
             r"(?i:aws_?secret_?(?:access_?)?key)\s*[:=]\s*[\"']?(?P<aws_secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
             group="aws_secret"),
    Detector("bearer_token", "BEARER_TOKEN", r"(?i:\bbearer)\s+(?P<bearer>[A-Za-z0-9\-._~+/]{16,}=*)",
             group="bearer"),
    Detector("url_password", "PASSWORD", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:(?P<password>[^\s@/]+)@",
             group="password"),
    Detector("email", "EMAIL", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    Detector("credit_card", "CREDIT_CARD", r"(?<![\d.])\d(?:[ -]?\d){12,18}(?!\d|\.\d)", check=luhn_valid),
    Detector("ipv4", "IP_ADDRESS", rf"(?<![\d.]){_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?!\d|\.\d)"),
    Detector("ipv6", "IP_ADDRESS", r"\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b"),
    # Phone numbers need the shape of one (a + prefix, or separated groups): bare numbers in text are not.
    Detector("phone", "PHONE",
             r"(?<![\w.+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?!\w|\.\d)"
             r"|(?<![\w+])\+\d{7,15}\b"),
)

_COMBINED = re.compile("|".join(f"(?P<d{i}>{d.pattern})" for i, d in enumerate(DETECTORS)))


def redact(text: str | None, counts: Counter | None = None) -> str | None:
    """Replace every secret and piece of personal data in `text` by its placeholder; count them by detector."""
    if not text:
        return text

    def replace(match: re.Match[str]) -> str:
        index = int(match.lastgroup[1:]) if match.lastgroup and match.lastgroup[0] == "d" else _which(match)
        detector = DETECTORS[index]
        found = match.group(0)
        if detector.check and not detector.check(found):
            return found
        if counts is not None:
            counts[detector.name] += 1
        if detector.group:
            start, end = match.span(detector.group)
            offset = match.start()
            return found[: start - offset] + f"[{detector.placeholder}]" + found[end - offset:]
        return f"[{detector.placeholder}]"

    return _COMBINED.sub(replace, text)


def _which(match: re.Match[str]) -> int:
    # lastgroup is the inner named group when a detector has one; find the detector whose group matched.
    for i in range(len(DETECTORS)):
        if match.group(f"d{i}") is not None:
            return i
    raise AssertionError("a match without a detector")
