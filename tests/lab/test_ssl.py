"""ssl.check / ssl.renew / ssl.issue against a real ACME CA (pebble), certbot and nginx serving TLS.

certbot runs on this machine (``connection: local``, as root) with its own config, work and
logs directories per test; nginx serves the lineage's ``live/`` files on a loopback port; the
served certificate is always read from the outside, by a TLS handshake.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from maintkit.playbook import load_playbook_full
from maintkit.results import RunResult, StepStatus
from tests import runs
from tests.lab.acme import AcmeServer, Certbot
from tests.lab.web import SiteHandle, WebStack, tls_peer_cert_der

pytestmark = pytest.mark.lab


def served_serial(site: SiteHandle, name: str) -> str:
    """The serial (hex) of the certificate nginx serves for ``name``, read by a TLS handshake."""
    from cryptography import x509

    return format(x509.load_der_x509_certificate(tls_peer_cert_der(site.port, name)).serial_number, "x")


@dataclass
class TlsSite:
    """A lineage issued by pebble and served by nginx, plus an inventory that reaches both."""

    name: str
    certbot: Certbot
    site: SiteHandle
    root_ca: Path
    inventory: Path
    state: Path

    def run(self, playbook: str | None = None, text: str | None = None, **kwargs: Any) -> RunResult:
        """Run a built-in playbook (by name) or a playbook text against this site."""
        loaded = load_playbook_full(playbook) if playbook else text or ""
        return runs.run(loaded, self.inventory, self.state, **kwargs)

    def serial(self) -> str:
        """Serial of the certificate served now."""
        return served_serial(self.site, self.name)

    def events(self, result: RunResult) -> list[dict[str, Any]]:
        """The audit log of a run."""
        lines = (Path(str(result.run_dir)) / "events.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]


def reload_argv(web: WebStack) -> list[str]:
    """``nginx -s reload`` for the lab nginx (started with its own -c/-p/-e)."""
    return [
        "/usr/sbin/nginx",
        "-e",
        str(web.nginx_error_log),
        "-c",
        str(web.nginx_conf),
        "-p",
        f"{web.nginx_dir}/",
        "-s",
        "reload",
    ]


@pytest.fixture
def tls_site(acme_ca: AcmeServer, certbot: Certbot, web_stack: WebStack, tmp_path: Path) -> Iterator[TlsSite]:
    """A fresh one-day certificate for a fresh name, served by nginx over TLS on its own port."""
    assert acme_ca.webroot is not None
    name = f"shop-{uuid.uuid4().hex[:8]}.test"
    res = certbot.certonly_webroot(name, acme_ca.webroot)
    assert res.returncode == 0, res.stdout + res.stderr
    root = web_stack.make_site_dir(f"tls-{name.split('.')[0]}")
    (root / "index.html").write_text("hello\n")
    site = web_stack.add_site(
        root.name,
        str(root),
        php=False,
        tls=(str(certbot.fullchain(name)), str(certbot.privkey(name))),
        server_name=name,
    )
    root_ca = tmp_path / "pebble-root.pem"
    root_ca.write_text(acme_ca.issuing_root_pem())
    path = tmp_path / "site"
    path.mkdir()
    env = {
        "connection": "local",
        "path": str(path),
        "url": site.url,
        "vars": {
            "cert_name": name,
            "ssl_server_name": name,
            "ssl_ca_bundle": str(root_ca),
            "ssl_reload": reload_argv(web_stack),
            "certbot_config_dir": str(certbot.config_dir),
            "certbot_work_dir": str(certbot.work_dir),
            "certbot_logs_dir": str(certbot.logs_dir),
            "certbot_env": {"REQUESTS_CA_BUNDLE": str(acme_ca.ca_bundle)},
            # pebble issues one-day certificates
            "ssl_warn_days": 0.5,
            "ssl_fail_days": 0.25,
            "ssl_verify_days": 0.5,
        },
    }
    inventory = runs.write_inventory(tmp_path, runs.one_site(env))
    try:
        yield TlsSite(name, certbot, site, root_ca, inventory, tmp_path / "state")
    finally:
        acme_ca.unfail(name)
        web_stack.remove_site(site.name)


def _set_vars(tls: TlsSite, **values: Any) -> None:
    data = yaml.safe_load(tls.inventory.read_text())
    data["sites"]["shop"]["environments"]["production"]["vars"].update(values)
    tls.inventory.write_text(yaml.safe_dump(data))


def _step(result: RunResult, step: str) -> Any:
    return next(s for s in result.sites[0].steps if s.step == step)


# ---------------------------------------------------------------------------- ssl.renew


def test_due_certificate_is_renewed_and_served(tls_site: TlsSite, web_stack: WebStack) -> None:
    old = tls_site.serial()
    _set_vars(tls_site, ssl_renew_days=30)  # a one-day certificate is due

    plan = tls_site.run("renew-ssl", check=True)
    assert plan.ok, plan.sites[0].error
    assert _step(plan, "renew").status is StepStatus.WOULD_CHANGE
    assert _step(plan, "after").status is StepStatus.UNKNOWN  # depends on the renewal
    assert tls_site.serial() == old  # plan changes nothing

    workers = web_stack.nginx_workers()
    result = tls_site.run("renew-ssl")
    assert result.ok, result.sites[0].error
    renew = _step(result, "renew")
    assert renew.status is StepStatus.CHANGED
    web_stack.wait_workers_retired(workers)  # a worker from before the reload may still accept
    new = tls_site.serial()
    assert new != old  # seen from the outside
    assert renew.changes[0].before["serial"] == old
    assert renew.changes[0].after["serial"] == new
    after = _step(result, "after")
    assert after.status is StepStatus.UNCHANGED
    assert after.data["cert"]["serial"] == new
    assert after.data["cert"]["chain_ok"] is True
    assert after.data["cert"]["covers_name"] is True
    assert tls_site.certbot.certificate(tls_site.name).serial_number == int(new, 16)


def test_certificate_not_due_is_unchanged(tls_site: TlsSite) -> None:
    old = tls_site.serial()
    _set_vars(tls_site, ssl_renew_days=0.5)  # a fresh one-day certificate has ~1 day left

    first = tls_site.run("renew-ssl")
    second = tls_site.run("renew-ssl")
    for result in (first, second):
        assert result.ok, result.sites[0].error
        assert result.changed == 0
        renew = _step(result, "renew")
        assert renew.status is StepStatus.UNCHANGED
        assert renew.reason.startswith("valid until ")
        assert "days left" in renew.reason
    assert tls_site.serial() == old
    before = _step(first, "before")
    assert before.data["cert"]["days_left"] > 0.5


def test_failed_renewal_is_clear_and_old_certificate_stays(tls_site: TlsSite, acme_ca: AcmeServer) -> None:
    old = tls_site.serial()
    _set_vars(tls_site, ssl_renew_days=30)
    tls_site.certbot.fresh_account(tls_site.name)  # a new account: pebble cannot reuse an authorization
    acme_ca.make_fail(tls_site.name)  # the http-01 validation now goes to 127.0.0.2: nothing there

    result = tls_site.run("renew-ssl")

    assert not result.ok
    renew = _step(result, "renew")
    assert renew.status is StepStatus.FAILED
    assert renew.error.startswith("apply: certbot renew failed with exit 1")
    assert "certbot_log_tail" in renew.data and renew.data["certbot_log_tail"]
    assert "Detail:" in renew.error  # what the CA said
    assert "dial tcp 127.0.0.2:" in renew.error  # the validation ran, and failed
    assert [s.step for s in result.sites[0].steps] == ["before", "renew"]  # stopped there
    assert tls_site.serial() == old  # the old certificate is still served
    failed = [e for e in tls_site.events(result) if e["event"] == "step.failed"]
    assert failed and failed[0]["step"] == "renew"


def test_reload_only_when_lineage_renewed_but_not_served(tls_site: TlsSite, web_stack: WebStack) -> None:
    old = tls_site.serial()
    res = tls_site.certbot.renew(tls_site.name, ["--force-renewal"])  # behind our back, no reload
    assert res.returncode == 0, res.stderr
    assert tls_site.serial() == old
    _set_vars(tls_site, ssl_renew_days=0.5)  # the renewed file is not due; the served one is older

    workers = web_stack.nginx_workers()
    result = tls_site.run("renew-ssl")

    assert result.ok, result.sites[0].error
    renew = _step(result, "renew")
    assert renew.status is StepStatus.CHANGED
    assert "reload needed" in renew.reason
    web_stack.wait_workers_retired(workers)
    assert tls_site.serial() == format(tls_site.certbot.certificate(tls_site.name).serial_number, "x")


# ---------------------------------------------------------------------------- ssl.check


def _check_playbook(**with_: Any) -> str:
    return yaml.safe_dump(
        {
            "name": "ssl-check",
            "stages": [{"env": "production", "steps": [{"action": "ssl.check", "with": with_}]}],
        }
    )


def test_ssl_check_reads_the_served_certificate(tls_site: TlsSite) -> None:
    base = {"server_name": tls_site.name, "ca_bundle": str(tls_site.root_ca)}

    ok = tls_site.run(text=_check_playbook(**base, warn_days=0.1, fail_days=0.05))
    assert ok.ok and ok.changed == 0
    cert = ok.sites[0].steps[0].data["cert"]
    assert cert["serial"] == tls_site.serial()
    assert cert["names"] == [tls_site.name]
    assert cert["chain_ok"] and cert["covers_name"]
    assert 0.5 < cert["days_left"] <= 1.0

    warned = tls_site.run(text=_check_playbook(**base, warn_days=30, fail_days=0.05))
    assert warned.ok
    assert "warning: expires in" in warned.sites[0].steps[0].reason

    failed = tls_site.run(text=_check_playbook(**base, fail_days=14))
    assert not failed.ok
    assert "fail below 14" in str(failed.sites[0].steps[0].error)
    assert failed.sites[0].steps[0].data["cert"]["serial"] == tls_site.serial()  # reports still see expiry

    untrusted = tls_site.run(text=_check_playbook(server_name=tls_site.name, fail_days=0))  # system store
    assert not untrusted.ok
    assert "chain does not verify" in str(untrusted.sites[0].steps[0].error)

    wrong_name = tls_site.run(
        text=_check_playbook(server_name="other.test", ca_bundle=str(tls_site.root_ca), fail_days=0)
    )
    assert not wrong_name.ok
    assert "do not cover other.test" in str(wrong_name.sites[0].steps[0].error)


def test_ssl_check_compares_the_file_on_the_host(tls_site: TlsSite) -> None:
    res = tls_site.certbot.renew(tls_site.name, ["--force-renewal"])  # new file, nginx not reloaded
    assert res.returncode == 0, res.stderr
    cert_file = str(tls_site.certbot.live_dir(tls_site.name) / "cert.pem")

    result = tls_site.run(
        text=_check_playbook(
            server_name=tls_site.name, ca_bundle=str(tls_site.root_ca), fail_days=0, warn_days=0, cert_file=cert_file
        )
    )

    assert result.ok
    step = result.sites[0].steps[0]
    assert "is not the certificate served" in step.reason
    assert step.data["cert"]["file"]["serial"] != step.data["cert"]["serial"]


# ---------------------------------------------------------------------------- ssl.issue


def test_ssl_issue_first_certificate_then_unchanged(tls_site: TlsSite, acme_ca: AcmeServer) -> None:
    name = f"new-{uuid.uuid4().hex[:8]}.test"
    cb = tls_site.certbot
    playbook = yaml.safe_dump(
        {
            "name": "issue",
            "stages": [
                {
                    "env": "production",
                    "steps": [
                        {
                            "action": "ssl.issue",
                            "with": {
                                "domains": [name],
                                "webroot": str(acme_ca.webroot),
                                "server": acme_ca.directory_url,
                                "config_dir": str(cb.config_dir),
                                "work_dir": str(cb.work_dir),
                                "logs_dir": str(cb.logs_dir),
                                "env": {"REQUESTS_CA_BUNDLE": str(acme_ca.ca_bundle)},
                            },
                        }
                    ],
                }
            ],
        }
    )

    first = tls_site.run(text=playbook)
    second = tls_site.run(text=playbook)

    assert first.ok, first.sites[0].error
    assert first.changed == 1
    assert first.sites[0].steps[0].changes[0].summary == "issued"
    assert cb.certificate(name).subject.rfc4514_string() == f"CN={name}"
    assert second.ok and second.changed == 0
    assert f"{name} covers {name}" in second.sites[0].steps[0].reason
