"""maintkit._text: the secret registry, redaction, and cutting after redaction."""

from __future__ import annotations

import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit._text import (
    forget_secrets,
    head,
    known_secrets,
    mask_known,
    redact_text,
    register_secret,
    registry_generation,
    tail,
)
from maintkit.audit import Redactor
from maintkit.templating import Secrets
from tests.secret_scan import find_leaks

SECRET = "Zq8vN2pLr5Tx9WcK4mHb7YdF3gJs6QeA1uVn"


def test_tail_redacts_before_it_cuts() -> None:
    register_secret(SECRET)
    text = "x" * 50 + SECRET + "0" * 20
    # cut first, the last 30 characters would be "...Ve A1uVn" + zeros: a piece of the secret
    assert tail(text, 30) == "…" + "x" * 6 + "***" + "0" * 20
    assert head("0" * 20 + SECRET + "x" * 50, 30) == "0" * 20 + "***" + "x" * 6 + "…"


def test_tail_and_head_keep_short_text_and_strip() -> None:
    assert tail("  hello \n", 10) == "hello"
    assert head("hello", 5) == "hello"
    assert tail("abcdef", 3) == "…ef"
    assert head("abcdef", 3) == "ab…"
    assert tail(None, 5) == "" and head(None, 5) == ""


def test_text_rules_run_before_the_cut() -> None:
    # the key must stay next to its value, or the value survives the cut unmasked
    assert tail("x" * 40 + " --password Hunter2Hunter2 done", 20) == "…--password *** done"


def test_pieces_at_the_edges_are_masked() -> None:
    register_secret(SECRET)
    assert mask_known(SECRET[10:] + " exited 3") == "*** exited 3"
    assert mask_known("ran: " + SECRET[:12]) == "ran: ***"
    assert mask_known(SECRET[5:20]) == "***"
    assert mask_known("ran: " + SECRET[:7]) == "ran: " + SECRET[:7]  # under 8 characters: not a piece
    assert mask_known("a " + SECRET[5:20] + " b") == "a " + SECRET[5:20] + " b"  # only at the edges


def test_short_values_are_ignored_and_forget_empties() -> None:
    register_secret("abc")
    register_secret(12345)
    assert known_secrets() == frozenset()
    register_secret(SECRET)
    before = registry_generation()
    forget_secrets()
    assert known_secrets() == frozenset() and registry_generation() == before + 1
    assert mask_known(SECRET) == SECRET


def test_template_secrets_and_redactors_register() -> None:
    Secrets({"SHOP_SEED": SECRET})["SHOP_SEED"]
    assert SECRET in known_secrets()
    forget_secrets()
    red = Redactor(["Another-Secret-Value-42"])
    assert redact_text("x Another-Secret-Value-42 y") == "x *** y"
    forget_secrets()
    # a redactor whose secrets were forgotten process-wide registers them again when it is used
    assert red.redact_text("x Another-Secret-Value-42 y") == "x *** y"
    assert "Another-Secret-Value-42" in known_secrets()


def test_concurrent_registration_keeps_every_value() -> None:
    values = [f"Value-{i:03d}-Kq7Zp" for i in range(200)]
    barrier = threading.Barrier(8)

    def worker(chunk: list[str]) -> None:
        barrier.wait()
        for v in chunk:
            register_secret(v)

    threads = [threading.Thread(target=worker, args=(values[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert known_secrets() == frozenset(values)
    assert mask_known(" ".join(values)) == " ".join(["***"] * 200)


ALNUM = st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=127)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    secret=st.text(ALNUM, min_size=12, max_size=64),
    before=st.text(st.sampled_from(" -_.:/#"), max_size=300),
    after=st.text(st.sampled_from(" -_.:/#"), max_size=300),
    n=st.integers(min_value=1, max_value=400),
)
def test_no_cut_leaves_a_piece_of_a_secret(secret: str, before: str, after: str, n: int) -> None:
    forget_secrets()
    register_secret(secret)
    text = before + secret + after
    assert find_leaks([("tail", tail(text, n)), ("head", head(text, n))], secret) == []
