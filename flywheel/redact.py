"""Redaction of secrets and personal data, with typed placeholders.

Before any text leaves for labeling or publishing it passes here: e-mail addresses (also spelled out, "alice at
example dot com"), phone numbers (validated with `phonenumbers`: international, and national formats told by
their trunk prefix or bracketed area code), payment cards (issuer range, length and Luhn), IBANs (checksum), US
social security numbers, IPv4 and IPv6 addresses, API keys and tokens (OpenAI, Anthropic, AWS, GitHub, Slack
tokens and webhooks, JWTs, private keys with or without their END line, bearer tokens), passwords and secrets
after a keyword (`password: ...`, `"SecretAccessKey": "..."`) or in URLs, and bare AWS secrets (by shape and
entropy) become `[EMAIL]`, `[PHONE]`, `[CREDIT_CARD]`, `[IBAN]`, `[SSN]`, `[IP_ADDRESS]`, `[API_KEY]`,
`[AWS_SECRET]`, `[JWT]`, `[PRIVATE_KEY]`, `[BEARER_TOKEN]`, `[PASSWORD]`, `[SECRET]`. A placeholder keeps the
type and the place of what it replaced, for a reviewer to audit. Names of people and street addresses are not
detected: no offline model or library that ships its data does it well enough here (see the README).

Numbers are only replaced in the shape of what they stand for: bare digit runs in math answers or code (large
integers, strings of zeros, lists of primes, coordinates) stay as they are.

All detectors are one compiled alternation, so a text is scanned once. Detectors are ordered from the
most specific (a private key block, a JWT) to the most generic (a phone number), so that a token is never
half-matched by a looser pattern first.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

PLACEHOLDERS = ("PRIVATE_KEY", "JWT", "API_KEY", "AWS_SECRET", "BEARER_TOKEN", "PASSWORD", "SECRET", "EMAIL",
                "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS", "PHONE")
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


def _card_brand_length(digits: str) -> bool:
    """Whether the number starts like a card of a known scheme and has that scheme's length (issuer ranges)."""
    n, p2, p3, p4, p6 = len(digits), int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649 or 622126 <= p6 <= 622925:
        return n in (16, 19)
    if 3528 <= p4 <= 3589:
        return n in (16, 19)
    if p2 in (36, 38) or 300 <= p3 <= 305:
        return n in (14, 16)
    return p2 == 62 and 16 <= n <= 19


def card_number(candidate: str) -> bool:
    """A payment card: an issuer's range and length, the Luhn check, and not a run of one or two digits
    (zeros in code, large integers in math answers pass Luhn one time in ten; they fail the issuer check)."""
    digits = "".join(c for c in candidate if c.isdigit())
    if digits == candidate and len(digits) not in (15, 16):
        return False  # written without spaces, a card is 15 or 16 digits; longer runs are numbers
    return len(set(digits)) > 1 and _card_brand_length(digits) and luhn_valid(digits)


def iban(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


# National phone formats are told by their trunk prefix (0 in most of Europe, India, Japan) or a bracketed
# area code; numbers written with a + are international. A bare run of digits is never a phone number here.
_TRUNK_REGIONS = ("DE", "FR", "GB", "IN", "JP", "IT", "ES", "NL", "BR", "AU", "CH", "AT", "BE", "SE", "PL")
_BRACKET_REGIONS = ("US", "BR", "MX", "AU", "GB")
_US_SHAPE = re.compile(r"\d{3}[-. ]\d{3}[-. ]\d{4}")


def phone_number(candidate: str) -> bool:
    import phonenumbers

    digits = sum(c.isdigit() for c in candidate)
    if not 7 <= digits <= 15:
        return False
    groups = re.findall(r"\d+", candidate)
    if len(groups) == 2 and "." in candidate and not candidate.startswith(("+", "(")):
        return False  # 0.493039: a decimal number
    if groups[0] == "0":
        return False  # "0 425 166": a list of numbers; a trunk prefix is written with its area code
    if not candidate.startswith("+") and len(groups) > 1 and min(len(g) for g in groups[1:]) < 2:
        return False  # "0 1 2 3 4 5 6": digits in a row, not a number someone dials
    if candidate.startswith("+"):
        regions: tuple[str | None, ...] = (None,)
    elif candidate.startswith("("):
        regions = _BRACKET_REGIONS
    elif candidate.startswith("0"):
        regions = _TRUNK_REGIONS
    elif _US_SHAPE.fullmatch(candidate):
        regions = ("US",)
    else:
        return False
    for region in regions:
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(candidate, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


def ipv6_address(candidate: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    groups = [g for g in candidate.split(":") if g]
    # "1::2" in a Python slice is a valid address, and no one's: an address has three groups, or a full one
    return len(groups) >= 3 or (len(groups) >= 2 and max(map(len, groups)) == 4)


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def aws_secret_shape(candidate: str) -> bool:
    """A bare 40-character AWS secret: mixed case and digits, and as random as a key is (not a word or a hash)."""
    return (any(c.isupper() for c in candidate) and any(c.islower() for c in candidate)
            and any(c.isdigit() for c in candidate) and _entropy(candidate) > 4.2)


def secret_value(candidate: str) -> bool:
    """The value after a password or secret keyword: one with a digit or a symbol in it; not a name in code
    (`password = password`, `api_key = os.environ[...]`) nor a placeholder already in place."""
    if candidate.startswith("[") or len(candidate) < 4:
        return False
    # a name in code (`os.environ`, `get_secret`, `password`): letters, underscores and dots only
    return not re.fullmatch(r"[A-Za-z_][A-Za-z_.]*", candidate)


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_KEYWORD_VALUE = r"[\"']?\s*[:=]\s*[\"']?(?P<{name}>[^\s\"',;{{}}()<>\[\]]{{4,}})"
_TLDS = r"(?:com|org|net|edu|gov|io|co|de|fr|uk|in|br|jp|info|biz|me|ai|us|eu|nl|es|it)"
DETECTORS: tuple[Detector, ...] = (
    Detector("private_key", "PRIVATE_KEY",
             r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----(?:[\s\S]+?-----END (?:[A-Z]+ )*PRIVATE KEY-----"
             r"|(?:\s*[A-Za-z0-9+/=]{16,})*)"),  # pasted without its END line: its body's lines, to where they stop
    Detector("jwt", "JWT", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    Detector("anthropic_key", "API_KEY", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    Detector("openai_key", "API_KEY", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    Detector("github_token", "API_KEY", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
    Detector("slack_webhook", "API_KEY",
             r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]+"),
    Detector("slack_token", "API_KEY", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    Detector("aws_access_key", "API_KEY", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    Detector("aws_secret", "AWS_SECRET",
             r"(?i:aws_?secret_?(?:access_?)?key|secretaccesskey)[\"']?\s*[:=]\s*[\"']?"
             r"(?P<aws_secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
             group="aws_secret"),
    Detector("bearer_token", "BEARER_TOKEN", r"(?i:\bbearer)\s+(?P<bearer>[A-Za-z0-9\-._~+/]{16,}=*)",
             group="bearer"),
    Detector("url_password", "PASSWORD", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:(?P<password>[^\s@/]+)@",
             group="password"),
    Detector("password", "PASSWORD", r"(?i:\b(?:password|passwd|passphrase|pwd))" +
             _KEYWORD_VALUE.format(name="pw_value"), check=secret_value, group="pw_value"),
    Detector("secret", "SECRET",
             r"(?i:\b(?:client[_-]?secret|secret[_-]?key|secret|api[_-]?key|access[_-]?token|auth[_-]?token|"
             r"private[_-]?token))" + _KEYWORD_VALUE.format(name="secret_value"), check=secret_value,
             group="secret_value"),
    Detector("email", "EMAIL", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    Detector("email_spelled", "EMAIL",
             r"(?i:\b[A-Za-z0-9._%+-]+\s*(?:\(at\)|\[at\]|\{at\}|\s+at\s+)\s*[A-Za-z0-9-]+"
             rf"(?:\s*(?:\(dot\)|\[dot\]|\{{dot\}}|\s+dot\s+)\s*[A-Za-z0-9-]+)*"
             rf"\s*(?:\(dot\)|\[dot\]|\{{dot\}}|\s+dot\s+)\s*{_TLDS}\b)"),
    Detector("iban", "IBAN", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", check=iban),
    Detector("credit_card", "CREDIT_CARD",
             r"(?<![\d./=-])(?:\d{4}(?P<sep>[ -])\d{4}(?P=sep)\d{4}(?P=sep)\d{1,7}|\d{4}[ -]\d{6}[ -]\d{4,5}"
             r"|\d{13,19})(?![\d/]|[.-]\d)", check=card_number),
    Detector("ssn", "SSN", r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
    Detector("ipv4", "IP_ADDRESS", rf"(?<![\d.]){_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?!\d|\.\d)"),
    Detector("ipv6", "IP_ADDRESS",
             r"(?<![\w:.])(?=[0-9A-Fa-f:]*::|(?:[0-9A-Fa-f]{1,4}:){7})[0-9A-Fa-f:]{3,39}(?![\w:])", check=ipv6_address),
    Detector("aws_secret_bare", "AWS_SECRET", r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
             check=aws_secret_shape),
    Detector("phone", "PHONE",
             r"(?<![\w.+/=-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,6}(?:[ .-]\d{1,8}){1,5}(?![\w]|[.-]\d)"
             r"|(?<![\w+])\+\d{7,15}\b", check=phone_number),
)

# A spelled-out e-mail is tried only where the text spells a dot: tried everywhere, it would cost as much as the
# rest together (its pattern starts at every word).
_SPELLED = next(i for i, d in enumerate(DETECTORS) if d.name == "email_spelled")
_COMBINED = re.compile("|".join(f"(?P<d{i}>{d.pattern})" for i, d in enumerate(DETECTORS) if i != _SPELLED))
_SPELLED_PATTERN = re.compile(f"(?P<d{_SPELLED}>{DETECTORS[_SPELLED].pattern})")
_SPELLED_HINT = re.compile(r"(?i)\bdot\b")


def redact(text: str | None, counts: Counter | None = None) -> str | None:
    """Replace every secret and piece of personal data in `text` by its placeholder; count them by detector."""
    if not text:
        return text

    def replace(match: re.Match[str]) -> str:
        index = int(match.lastgroup[1:]) if match.lastgroup and match.lastgroup[0] == "d" else _which(match)
        detector = DETECTORS[index]
        found = match.group(0)
        if detector.check and not detector.check(match.group(detector.group) if detector.group else found):
            return found
        if counts is not None:
            counts[detector.name] += 1
        if detector.group:
            start, end = match.span(detector.group)
            offset = match.start()
            return found[: start - offset] + f"[{detector.placeholder}]" + found[end - offset:]
        return f"[{detector.placeholder}]"

    text = _COMBINED.sub(replace, text)
    return _SPELLED_PATTERN.sub(replace, text) if _SPELLED_HINT.search(text) else text


def _which(match: re.Match[str]) -> int:
    # lastgroup is the inner named group when a detector has one; find the detector whose group matched.
    for i in range(len(DETECTORS)):
        if match.group(f"d{i}") is not None:
            return i
    raise AssertionError("a match without a detector")
