"""The lab servers work: each answers and behaves as the other tests rely on."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from cryptography import x509

from tests.lab.acme import AcmeServer, Certbot
from tests.lab.gitrepo import PHP_APP_FILES, BareRepo
from tests.lab.mariadb import MariaDB
from tests.lab.redisd import RedisServer
from tests.lab.web import WebStack, WebStackError, maintenance_snippet, tls_peer_cert_der

pytestmark = pytest.mark.lab


def _release(site_dir: Path, name: str, body: str) -> None:
    public = site_dir / "releases" / name / "public"
    (public / "cart").mkdir(parents=True)
    (public / "index.php").write_text(
        f"<?php\necho '{body} host=' . $_SERVER['HTTP_HOST'] . ' uri=' . $_SERVER['REQUEST_URI'];\n"
    )
    (public / "cart" / "index.php").write_text(f"<?php\necho 'cart {body}';\n")
    (public / "static.txt").write_text(f"static {body}\n")


def _switch_current(site_dir: Path, release: str) -> None:
    tmp = site_dir / "current.tmp"
    tmp.symlink_to(f"releases/{release}")
    tmp.rename(site_dir / "current")


# -- nginx + php-fpm -------------------------------------------------------------------------------


def test_php_site_serves_current_and_symlink_switch_is_immediate(web_stack: WebStack, web_site_dir: Path) -> None:
    _release(web_site_dir, "r1", "release-one")
    _release(web_site_dir, "r2", "release-two")
    _switch_current(web_site_dir, "r1")
    site = web_stack.add_site(web_site_dir.name, f"{web_site_dir}/current/public")

    front = requests.get(f"{site.url}/", timeout=5)
    assert front.status_code == 200
    assert front.text.startswith("release-one")
    assert f"host=127.0.0.1:{site.port}" in front.text  # HTTP_HOST keeps the port
    assert requests.get(f"{site.url}/cart/", timeout=5).text == "cart release-one"
    pretty = requests.get(f"{site.url}/product/blue-shirt/?ref=1", timeout=5)
    assert pretty.status_code == 200
    assert "uri=/product/blue-shirt/?ref=1" in pretty.text
    assert requests.get(f"{site.url}/static.txt", timeout=5).text == "static release-one\n"

    _switch_current(web_site_dir, "r2")
    assert requests.get(f"{site.url}/", timeout=5).text.startswith("release-two")
    assert requests.get(f"{site.url}/cart/", timeout=5).text == "cart release-two"


def test_fastcgi_cache_miss_then_hit_and_purge(web_stack: WebStack, web_site_dir: Path) -> None:
    _release(web_site_dir, "r1", "cached")
    _switch_current(web_site_dir, "r1")
    site = web_stack.add_site(web_site_dir.name, f"{web_site_dir}/current/public", fastcgi_cache=True)
    url = f"{site.url}/cart/"

    assert requests.get(url, timeout=5).headers["X-Cache"] == "MISS"
    assert requests.get(url, timeout=5).headers["X-Cache"] == "HIT"
    assert site.cache_dir is not None and any(p.is_file() for p in site.cache_dir.rglob("*"))

    assert requests.get(f"{site.purge_url_prefix}/cart/", timeout=5).status_code == 200
    assert requests.get(url, timeout=5).headers["X-Cache"] == "MISS"
    assert requests.get(url, timeout=5).headers["X-Cache"] == "HIT"

    for path in site.cache_dir.rglob("*"):  # purge everything: delete the files while nginx runs
        if path.is_file():
            path.unlink()
    assert requests.get(url, timeout=5).headers["X-Cache"] == "MISS"


def test_maintenance_flag_answers_503_with_retry_after(web_stack: WebStack, web_site_dir: Path) -> None:
    _release(web_site_dir, "r1", "open")
    _switch_current(web_site_dir, "r1")
    flag = web_site_dir / ".maint" / "maintenance.flag"
    site = web_stack.add_site(web_site_dir.name, f"{web_site_dir}/current/public", maintenance_flag=str(flag))
    assert requests.get(f"{site.url}/", timeout=5).status_code == 200

    flag.parent.mkdir()
    flag.write_text("")
    for path in ("/", "/cart/", "/static.txt"):
        down = requests.get(f"{site.url}{path}", timeout=5)
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "300"

    flag.unlink()
    assert requests.get(f"{site.url}/", timeout=5).text.startswith("open")


def test_maintenance_snippet_is_plain_nginx_and_rejects_unsafe_paths() -> None:
    snippet = maintenance_snippet("/var/www/shop/.maint/maintenance.flag")
    assert "if (-f /var/www/shop/.maint/maintenance.flag)" in snippet
    assert "add_header Retry-After 300 always;" in snippet
    for bad in ("relative/flag", "/x; return 200", "/with space", "/a/$host"):
        with pytest.raises(ValueError):
            maintenance_snippet(bad)


def test_php_errors_reach_the_php_error_log_and_reload_serves_edited_code(
    web_stack: WebStack, web_site_dir: Path
) -> None:
    public = web_site_dir / "public"
    public.mkdir()
    (public / "index.php").write_text("<?php\nerror_log('lab-marker-' . $_GET['m']);\necho 'logged';\n")
    site = web_stack.add_site(web_site_dir.name, str(public))
    marker = os.urandom(4).hex()

    assert requests.get(f"{site.url}/?m={marker}", timeout=5).text == "logged"
    assert f"lab-marker-{marker}" in web_stack.php_error_log.read_text()

    (public / "index.php").write_text("<?php\necho 'edited';\n")  # in place: OPcache may serve it stale
    pid = web_stack.php_pid
    web_stack.reload_php()
    assert web_stack.php_pid == pid
    assert int(web_stack.php_pid_file.read_text()) == pid
    assert requests.get(f"{site.url}/", timeout=5).text == "edited"


def test_a_broken_site_config_raises_with_nginx_message_and_leaves_nginx_serving(
    web_stack: WebStack, web_site_dir: Path
) -> None:
    with pytest.raises(WebStackError, match="no-such-cert.pem"):
        web_stack.add_site(web_site_dir.name, str(web_site_dir), tls=("/nonexistent/no-such-cert.pem", "/x.key"))
    (web_site_dir / "ok.txt").write_text("ok")
    site = web_stack.add_site(web_site_dir.name, str(web_site_dir), php=False)
    assert requests.get(f"{site.url}/ok.txt", timeout=5).text == "ok"


# -- MariaDB ---------------------------------------------------------------------------------------


def test_mariadb_database_and_user_work_through_my_cnf(mariadb: MariaDB, tmp_path: Path) -> None:
    user, password = mariadb.create_database("lab_shop_a")
    home = tmp_path / "home"
    home.mkdir()
    cnf = mariadb.write_my_cnf(home, user, password, owner="root")
    assert cnf == home / ".my.cnf"
    assert cnf.stat().st_mode & 0o777 == 0o600
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}

    def client(query: str, db: str = "lab_shop_a") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mariadb", "--batch", "--skip-column-names", "-e", query, db],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    res = client("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'one');")
    assert res.returncode == 0, res.stderr
    res = client("SELECT CURRENT_USER(); SELECT v FROM t WHERE id = 1;")
    assert res.stdout.split() == [f"{user}@127.0.0.1", "one"]
    assert mariadb.sql("SELECT COUNT(*) FROM t", db="lab_shop_a").strip() == "1"

    denied = client("SELECT 1", db="mysql")
    assert denied.returncode != 0 and "denied" in denied.stderr

    dump = subprocess.run(
        ["mariadb-dump", "--single-transaction", "--routines", "--triggers", "lab_shop_a"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert dump.returncode == 0, dump.stderr
    assert "INSERT INTO `t` VALUES" in dump.stdout


def test_mariadb_root_works_only_through_the_socket(mariadb: MariaDB) -> None:
    assert mariadb.sql("SELECT 40 + 2").strip() == "42"
    over_tcp = subprocess.run(
        ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(mariadb.port), "-uroot", "-e", "SELECT 1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert over_tcp.returncode != 0


# -- Redis -----------------------------------------------------------------------------------------


def test_redis_requires_the_password(redis_server: RedisServer) -> None:
    assert redis_server.cli("PING") == "PONG"
    assert redis_server.cli("SET", "lab:key", "value") == "OK"
    assert redis_server.cli("GET", "lab:key") == "value"
    assert "NOAUTH" in redis_server.cli("GET", "lab:key", auth=False)
    assert "NOAUTH" in redis_server.cli("PING", password="not-the-password")  # the failed AUTH is only a warning


def test_redis_server_starts_and_stops_by_pid(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password="s3cret-pass").start()
    pid = server.pid
    try:
        assert server.cli("PING") == "PONG"
        assert "s3cret-pass" not in Path(f"/proc/{pid}/cmdline").read_text()
    finally:
        server.stop()
    assert not Path(f"/proc/{pid}").exists()


# -- ACME: pebble + certbot + nginx ----------------------------------------------------------------


def _served_cert(port: int) -> x509.Certificate:
    return x509.load_der_x509_certificate(tls_peer_cert_der(port))


def test_acme_issue_serve_renew_and_failed_renewal(
    acme_ca: AcmeServer, certbot: Certbot, web_stack: WebStack, web_site_dir: Path
) -> None:
    name = f"{web_site_dir.name}.shop.test"
    assert acme_ca.webroot is not None
    issued = certbot.certonly_webroot(name, acme_ca.webroot)
    assert issued.returncode == 0, issued.stdout + issued.stderr
    first = certbot.certificate(name)
    lifetime = first.not_valid_after_utc - first.not_valid_before_utc
    assert lifetime.total_seconds() <= 86400 + 60  # a one-day certificate: due for renewal
    root = x509.load_pem_x509_certificate(acme_ca.issuing_root_pem().encode())
    chain = x509.load_pem_x509_certificates(certbot.fullchain(name).read_bytes())
    assert chain[-1].issuer == root.subject

    (web_site_dir / "index.html").write_text("tls ok")
    site = web_stack.add_site(
        web_site_dir.name,
        str(web_site_dir),
        php=False,
        tls=(str(certbot.fullchain(name)), str(certbot.privkey(name))),
        server_name=name,
    )
    served = _served_cert(site.port)
    assert served.serial_number == first.serial_number
    assert x509.DNSName(name) in served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    renewed = certbot.renew(name)
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    second = certbot.certificate(name)
    assert second.serial_number != first.serial_number
    web_stack.reload_nginx()
    assert _served_cert(site.port).serial_number == second.serial_number

    before = certbot.account_of(name)
    assert certbot.fresh_account(name) != before  # no authorization of the first account to reuse
    acme_ca.make_fail(name)
    try:
        failed = certbot.renew(name)
    finally:
        acme_ca.unfail(name)
    assert failed.returncode != 0
    assert "could not be renewed" in failed.stdout + failed.stderr
    assert "dial tcp 127.0.0.2:" in failed.stdout + failed.stderr  # the validation ran, and failed
    assert certbot.certificate(name).serial_number == second.serial_number


# -- git -------------------------------------------------------------------------------------------


def test_bare_repo_commits_tags_and_clones(bare_repo: BareRepo, tmp_path: Path) -> None:
    first = bare_repo.commit(PHP_APP_FILES, "shop v1", tag="v1.0.0")
    second = bare_repo.commit({"public/index.php": "<?php echo 'v2';\n", "composer.json": None}, "shop v2")
    assert bare_repo.head() == second
    assert bare_repo.head("refs/tags/v1.0.0^{commit}") == first

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", bare_repo.url, str(clone)], check=True, capture_output=True, timeout=60)
    assert (clone / "public" / "index.php").read_text() == "<?php echo 'v2';\n"
    assert (clone / "public" / "cart" / "index.php").exists()
    assert not (clone / "composer.json").exists()
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "v1.0.0"], check=True, capture_output=True, timeout=60)
    assert (clone / "composer.json").exists()


def test_bare_repo_owned_by_another_user_can_be_cloned_by_that_user(
    bare_repo_factory: Callable[..., BareRepo],
) -> None:
    repo = bare_repo_factory("shop.git", owner="www-data")
    sha = repo.commit(PHP_APP_FILES, "shop v1")
    target = repo.path.parent / "www-clone"
    target.mkdir()
    shutil.chown(target, "www-data")
    subprocess.run(
        ["runuser", "-u", "www-data", "--", "git", "clone", "-q", str(repo.path), str(target / "c")],
        env={"HOME": str(target), "PATH": os.environ["PATH"]},
        check=True,
        capture_output=True,
        timeout=60,
    )
    head = subprocess.run(
        ["git", "-C", str(target / "c"), "-c", "safe.directory=*", "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert head.stdout.strip() == sha
