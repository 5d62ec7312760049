"""The key format: a typo or a scanner hit is recognised without a database query."""

from __future__ import annotations

import pytest

from app.keys import format as kf

PREFIX = "klk"


def _fresh() -> tuple[str, str, str]:
    return PREFIX, kf.new_public_id(), kf.new_secret()


def test_assemble_then_parse_round_trips():
    for _ in range(200):
        prefix, public_id, secret = _fresh()
        key = kf.assemble(prefix, public_id, secret)
        assert key.startswith(f"{prefix}.{public_id}.{secret}")
        assert len(key) == len(prefix) + 2 + kf.ID_LEN + kf.SECRET_LEN + kf.CHECKSUM_LEN
        assert kf.parse(key, PREFIX) == kf.ParsedKey(prefix, public_id, secret)


def test_secret_carries_192_bits_and_ids_differ():
    secrets_ = {kf.new_secret() for _ in range(500)}
    ids = {kf.new_public_id() for _ in range(500)}
    assert len(secrets_) == 500 and len(ids) == 500
    # 62**33 > 2**192: the fixed-width base62 secret can hold every 192-bit value.
    assert 62**kf.SECRET_LEN >= 2**kf.SECRET_BITS
    assert kf.b62decode(kf.b62encode(2**192 - 1, kf.SECRET_LEN)) == 2**192 - 1


def test_checksum_catches_every_single_character_substitution():
    """Exhaustive: every position, every other alphabet character and a few strangers.

    No app and no app context exist here, so a database query inside parse would raise.
    """
    key = kf.assemble(*_fresh())
    strangers = ".-_ /+=é\x00"
    missed = []
    tried = 0
    for pos, original in enumerate(key):
        for ch in kf.ALPHABET + strangers:
            if ch == original:
                continue
            mutated = key[:pos] + ch + key[pos + 1 :]
            tried += 1
            try:
                kf.parse(mutated, PREFIX)
            except kf.MalformedKey:
                continue
            missed.append((pos, original, ch))
    assert tried > len(key) * 60
    assert missed == []


def test_checksum_catches_adjacent_swaps_and_dropped_characters():
    key = kf.assemble(*_fresh())
    for pos in range(len(key) - 1):
        if key[pos] != key[pos + 1]:
            swapped = key[:pos] + key[pos + 1] + key[pos] + key[pos + 2 :]
            with pytest.raises(kf.MalformedKey):
                kf.parse(swapped, PREFIX)
        with pytest.raises(kf.MalformedKey):
            kf.parse(key[:pos] + key[pos + 1 :], PREFIX)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda k: "abc" + k[3:], id="other-prefix-same-length"),
        pytest.param(lambda k: "sk" + k[3:], id="shorter-prefix"),
        pytest.param(lambda k: k + "A", id="one-too-long"),
        pytest.param(lambda k: k[:-1], id="one-too-short"),
        pytest.param(lambda k: k.replace(".", "_"), id="no-dots"),
        pytest.param(lambda k: k.upper(), id="upper-case"),
        pytest.param(lambda k: " " + k, id="leading-space"),
        pytest.param(lambda k: k + "\n", id="trailing-newline"),
        pytest.param(lambda k: "", id="empty"),
        pytest.param(lambda k: k * 40, id="huge"),
    ],
)
def test_malformed_strings_are_rejected(mangle):
    key = kf.assemble(*_fresh())
    with pytest.raises(kf.MalformedKey):
        kf.parse(mangle(key), PREFIX)


def test_a_valid_key_with_another_prefix_is_malformed_here():
    other = kf.assemble("ghp", kf.new_public_id(), kf.new_secret())
    assert kf.parse(other, "ghp").prefix == "ghp"
    with pytest.raises(kf.MalformedKey):
        kf.parse(other, PREFIX)


@pytest.mark.parametrize("raw", [None, 42, 4.2, b"klk.abc", ["klk"], {"key": "klk"}, True])
def test_non_strings_are_malformed(raw):
    with pytest.raises(kf.MalformedKey):
        kf.parse(raw, PREFIX)


def test_public_id_shape():
    assert kf.is_public_id(kf.new_public_id())
    for bad in (
        "",
        "A" * 11,
        "A" * 13,
        "AAAAAAAAAAA.",
        "AAAAAAAAAAA\x00",
        None,
        12,
        "ÄAAAAAAAAAAA",
    ):
        assert not kf.is_public_id(bad)
