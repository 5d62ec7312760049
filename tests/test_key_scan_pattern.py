"""The regular expression docs/operations.md gives scanners (GitHub, gitleaks) is what
app/keys/format.py derives, matches keys as they are made and refuses near-misses."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from app.keys import format as keyformat

DOC = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()


def _block(marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\n```[a-z]*\n(.*?)\n```", DOC, re.S)
    assert m, f"docs/operations.md has no {marker} block"
    return m.group(1)


PATTERN = re.compile(_block("key-regex"))


def _key(prefix: str = "klk") -> str:
    return keyformat.assemble(prefix, keyformat.new_public_id(), keyformat.new_secret())


def test_the_documented_regex_is_the_one_the_code_derives() -> None:
    assert _block("key-regex") == keyformat.scan_pattern("klk")
    rule = tomllib.loads(_block("gitleaks-rule"))["rules"][0]
    assert rule["regex"] == keyformat.scan_pattern("klk")
    assert rule["keywords"] == ["klk."]


@pytest.mark.parametrize(
    "context",
    [
        "{key}",
        'API_KEY="{key}"',
        "export KEYLEDGER_KEY={key}\n",
        "Authorization: Bearer {key}",
        "https://example.com/?key={key}&x=1",
        "'{key}',",
        "`{key}`",
    ],
)
def test_it_finds_generated_keys_in_text(context: str) -> None:
    for _ in range(50):
        key = _key()
        assert PATTERN.findall(context.format(key=key)) == [key]


def test_it_finds_every_key_in_a_file() -> None:
    found = [_key() for _ in range(20)]
    text = "\n".join(f"KEY_{i} = '{k}'" for i, k in enumerate(found))
    assert PATTERN.findall(text) == found


def _near_misses(key: str) -> list[str]:
    _, public_id, tail = key.split(".")
    return [
        f"klx.{public_id}.{tail}",  # another prefix
        f"xklk.{public_id}.{tail}",  # glued to a word
        f"klk.{public_id[:-1]}.{tail}",  # id one short
        f"klk.{public_id}A.{tail}",  # id one long
        f"klk.{public_id}.{tail[:-1]}",  # secret one short
        f"klk.{public_id}.{tail}A",  # one long
        f"klk.{public_id}.{tail}_x",  # runs on into a word
        f"klk_{public_id}_{tail}",  # other separators
        f"klk.{public_id}.{tail[:10]}-{tail[11:]}",  # a character outside base62
        f"KLK.{public_id}.{tail}",  # case matters
    ]


def test_it_refuses_near_misses() -> None:
    for _ in range(20):
        for miss in _near_misses(_key()):
            assert PATTERN.search(miss) is None, miss


def test_another_prefix_gets_its_own_pattern() -> None:
    key = _key("acme")
    assert re.fullmatch(keyformat.scan_pattern("acme"), key)
    assert re.search(keyformat.scan_pattern("klk"), key) is None
