"""Clean text full of numbers, code and structure, with no secret and no personal data in it: what redaction
must leave alone. Built from templates with random values, so it is large and varied without a download."""

from __future__ import annotations

import hashlib
import random
import string
import uuid

_PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97]


def _number(rng: random.Random) -> str:
    return str(rng.choice([rng.randint(10**9, 10**20), 2 ** rng.randint(30, 64), rng.randint(10**12, 10**16) * 1000]))


TEMPLATES = [
    lambda r: f"The answer is {_number(r)}.",
    lambda r: f"{r.randint(1, 99999)} × {r.random():.6f} = {r.random() * 10**5:.2f}",
    lambda r: f"$20,000 * ({r.random():.2f})^3 = ${r.randint(1000, 99999):,}.{r.randint(10, 99)}",
    lambda r: "primes: " + " ".join(map(str, _PRIMES[: r.randint(8, 25)])),
    lambda r: f"matrix = [[{r.randint(0, 9)}, {r.randint(0, 9)}], [{r.randint(0, 9)}, {r.randint(0, 9)}]]",
    lambda r: f"{'0' * r.randint(13, 19)} is a string of zeros",
    lambda r: f'<g transform="rotate({r.randint(0, 359)} {r.randint(0, 500)} {r.randint(0, 500)})">',
    lambda r: f"translate({r.randint(0, 999)} {r.randint(0, 999)}) scale({r.random():.3f})",
    lambda r: f"xs = values[{r.randint(0, 9)}::{r.randint(1, 4)}]  # every other one",
    lambda r: "std::vector<int> v; std::map<std::string, int> m;",
    lambda r: f"commit {hashlib.sha1(str(r.random()).encode()).hexdigest()} (sha256 "
              f"{hashlib.sha256(str(r.random()).encode()).hexdigest()})",
    lambda r: f"request {uuid.UUID(int=r.getrandbits(128))} took {r.randint(1, 9999)} ms",
    lambda r: 'password = input("Password: ")\nif check(password): login()',
    lambda r: 'api_key = os.environ["OPENAI_API_KEY"]  # read from the environment',
    lambda r: f"doi:10.{r.randint(1000, 9999)}/{r.randint(10**12, 10**16)}",
    lambda r: f"ISBN 978-{r.randint(0, 9)}-{r.randint(10, 99)}-{r.randint(100000, 999999)}-{r.randint(0, 9)}",
    lambda r: f"{r.randint(2000, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
              f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
    lambda r: f"version {r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
    lambda r: f"lat {r.uniform(-90, 90):.4f}, lon {r.uniform(-180, 180):.4f}",
    lambda r: ",".join(str(r.randint(0, 10**6)) for _ in range(r.randint(3, 12))),
    lambda r: " ".join(str(r.randint(100, 999)) for _ in range(r.randint(3, 6))),
    lambda r: f"id,{r.randint(10**6, 10**9)},{r.random():.8f},{r.randint(0, 1)}",
    lambda r: f"1e{r.randint(-20, 20)} + {r.random():.3e} = {r.random():.10f}",
    lambda r: f"Order total {r.randint(1, 999)}.{r.randint(10, 99)} EUR, {r.randint(1, 50)} items, "
              f"tracking {r.randint(10**9, 10**10)}",
    lambda r: f"{{\"id\": {r.randint(10**12, 10**18)}, \"score\": {r.random():.4f}, \"tags\": [\"a\", \"b\"]}}",
    lambda r: f"color: #{r.randint(0, 0xFFFFFF):06x}; margin: {r.randint(0, 40)}px {r.randint(0, 40)}px",
    lambda r: f"Step {r.randint(1, 9)}: {r.randint(10, 999)} - {r.randint(1, 99)} = {r.randint(1, 999)}",
    lambda r: f"base64 {''.join(r.choice(string.ascii_letters) for _ in range(24))}==",
    lambda r: f"Meet at the office at {r.randint(1, 12)} pm, then at the station.",
]


def clean_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(TEMPLATES)(rng) for _ in range(n)]
