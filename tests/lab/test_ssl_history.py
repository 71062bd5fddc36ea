"""Certificate history in the state index: ssl.renew and ssl.check append to certs.jsonl; the report shows it."""

from __future__ import annotations

import pytest

from maintkit.state import index as state_index
from tests.lab.test_ssl import TlsSite, _set_vars, tls_site  # noqa: F401  (the fixture)
from tests.runs import maint_in_process

pytestmark = pytest.mark.lab


def _history(tls: TlsSite) -> list[tuple[str, str, str]]:
    return [(c["action"], c["event"], c["serial"]) for c in state_index.certs(tls.state, "shop", "production")]


def test_checks_and_renewals_are_recorded_and_reported(tls_site: TlsSite, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    old = tls_site.serial()
    _set_vars(tls_site, ssl_renew_days=30)  # a one-day certificate is due

    plan = tls_site.run("renew-ssl", check=True)
    assert plan.ok, plan.sites[0].error
    assert _history(tls_site) == []  # a plan records nothing

    result = tls_site.run("renew-ssl")
    assert result.ok, result.sites[0].error
    new = tls_site.serial()
    assert new != old
    assert _history(tls_site) == [  # before (ssl.check), renew (its check, then the renewal), after (ssl.check)
        ("ssl.check", "checked", old),
        ("ssl.renew", "checked", old),
        ("ssl.renew", "renewed", new),
        ("ssl.check", "checked", new),
    ]
    renewed = state_index.certs(tls_site.state, "shop", "production")[2]
    assert renewed["run_id"] == result.run_id
    assert renewed["renewed"]["from"]["serial"] == old and renewed["renewed"]["to"]["serial"] == new
    checked = state_index.certs(tls_site.state, "shop", "production")[3]
    assert (checked["server_name"], checked["problems"], checked["chain_ok"]) == (tls_site.name, [], True)

    monkeypatch.delenv("MAINT_STATE", raising=False)
    out = maint_in_process("report", "--state-dir", str(tls_site.state))
    assert out.exit_code == 0, out.output
    history = out.stdout.split("Certificate history:\n", 1)[1].strip().split("\n\n", 1)[0].splitlines()
    assert history[0] == "| checked | env | certificate | event | serial | valid until | days left | run |"
    rows = [line.split(" | ") for line in history[2:6]]
    # the "before" check is report_only with the playbook's fail_days 14: its problem is in the history
    assert rows[0][3].startswith("checked: expires in 1.0 days (fail below 14), on ")
    rows[0][3] = "checked"
    assert [(r[1], r[3], r[4], r[7].rstrip(" |")) for r in rows] == [
        ("production", "checked", old, result.run_id),
        ("production", "checked", old, result.run_id),
        ("production", "renewed", new, result.run_id),
        ("production", "checked", new, result.run_id),
    ]
    assert rows[3][2] == tls_site.name
    assert len(history) == 6  # the header, its rule and the four records of the period
