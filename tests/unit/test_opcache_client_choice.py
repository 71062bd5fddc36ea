"""Which client cache.clear's FastCGI reset uses: the host's one-round-trip shell needs both
``cgi-fcgi`` and coreutils' ``timeout`` (it bounds each request); without either, ``auto``
takes the controller's client, and an explicit ``client: cgi-fcgi`` is refused by name."""

from __future__ import annotations

import pytest

from maintkit.actions.cache.base import TargetFailed
from maintkit.actions.cache.opcache_fcgi import OpcacheFastcgi
from maintkit.actions.cache.params import OpcacheTarget
from maintkit.probes import RawOutput
from maintkit.testing import FakeTransport, make_context


def choose(found: list[str], client: str = "auto") -> str:
    block = OpcacheTarget.model_validate({"fastcgi": "127.0.0.1:9000", "client": client})
    target = OpcacheFastcgi(block)
    ctx = make_context(FakeTransport())
    (tools,) = target.probes(ctx)  # a TCP address: no socket to look for
    ctx.probe_cache.put(ctx.host_key, tools.key, RawOutput("".join(f"{n}\n" for n in found), 0))
    return target.check(ctx).plan.client


def test_the_host_shell_needs_cgi_fcgi_and_timeout() -> None:
    assert choose(["cgi-fcgi", "timeout", "php"]) == "cgi-fcgi"
    assert choose(["cgi-fcgi", "php"]) == "controller"
    assert choose(["timeout", "php"]) == "controller"


def test_an_explicit_cgi_fcgi_without_timeout_is_refused_by_name() -> None:
    with pytest.raises(
        TargetFailed, match=r"the host has no cgi-fcgi \(with coreutils' timeout\) to reach 127\.0\.0\.1:9000"
    ):
        choose(["cgi-fcgi", "php"], client="cgi-fcgi")
