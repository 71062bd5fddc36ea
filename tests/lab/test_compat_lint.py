"""``compat.check`` lints an updated package in ONE PHP process, reporting exactly what ``php -l`` reports.

Every start of the step's PHP CLI goes through a shim (the step's ``php``) that logs how it was
started: the batch lint (``-r``), a per-file ``php -l`` or the version read. The messages are
compared with what ``php -l`` itself prints for the same file (``file: PHP Parse error:  ... on
line N``), over SSH on the lab host and, for the per-file fallback, with the script run locally.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from maintkit.actions.compat import lint_script
from maintkit.playbook import playbook_from_text
from maintkit.results import StepStatus
from tests.cms_helpers import chown_tree, make_plugin_zip, shop_cart_files, wp_plugin_version
from tests.lab.recording import Recorder
from tests.lab.wp_fixtures import Shop, run, steps, write_inventory

pytestmark = pytest.mark.lab

PARSE_ERROR = "<?php\nfunction unused_total() {\n    return 1 +;\n}\n"
COMPILE_ERROR = "<?php\nfunction twice() {}\nfunction twice() {}\n"
GOOD = "<?php\nfunction helper_{n}() {{ return {n}; }}\n"

LINT_ONLY = """\
name: lint
on_failure: rollback
stages:
  - env: staging
    steps:
      - {{id: update, action: cms.update}}
      - {{id: compat, action: compat.check, with: {{update_step: update, php: '{php}'}}}}
"""


def php_shim(directory: Path) -> tuple[Path, Path]:
    """A ``php`` wrapper logging each start as ``batch`` (``-r`` with the lint script), ``lint``
    (``-l``), ``version`` (``-r echo PHP_VERSION``) or ``other``; and its log."""
    log = directory / "compat-php-starts.log"
    shim = directory / "php-compat-counting"
    shim.write_text(
        "#!/bin/sh\n"
        'kind=other\nfor a in "$@"; do case "$a" in\n'
        "  *MAINTKIT-LINT-DONE*) kind=batch ;;\n  -l) kind=lint ;;\n  *PHP_VERSION*) kind=version ;;\n"
        "esac; done\n"
        f"echo \"$kind\" >> '{log}'\n"
        'exec php "$@"\n'
    )
    shim.chmod(0o755)
    log.touch()
    chown_tree(log, "deploy")
    return shim, log


def php_l_first_error(directory: Path, rel: str, php: tuple[str, ...] = ("php",)) -> str:
    """The line ``php -l`` prints first for ``./rel`` (what compat.check always reported)."""
    argv = [*php, "-d", "display_errors=1", "-l", f"./{rel}"]
    proc = subprocess.run(argv, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 255, proc.stdout
    return next(line for line in proc.stdout.splitlines() if "error" in line.lower())


def plugin_files(version: str, extra: dict[str, str]) -> dict[str, str]:
    """shop-cart ``version`` with 6 more PHP files (never included by the plugin) and ``extra``."""
    files = shop_cart_files(version)
    files.update({f"lib/helper{n}.php": GOOD.format(n=n) for n in range(6)})
    return {**files, **extra}


def test_a_good_update_is_linted_by_one_php_process(shop: Shop) -> None:
    make_plugin_zip(shop.repo, "shop-cart", "1.1.0", plugin_files("1.1.0", {}))
    shim, log = php_shim(shop.host_dir)
    inv = write_inventory(shop, envs=("staging",))

    result = run(shop, inv, playbook_from_text(LINT_ONLY.format(php=shim)))

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    st = steps(result, "staging")
    assert st["update"].status is StepStatus.CHANGED and st["compat"].status is StepStatus.UNCHANGED
    assert st["compat"].data["failures"] == []
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.1.0"
    # 8 PHP files: one lint process for all of them, no php -l, and the version read
    assert Counter(log.read_text().split()) == Counter({"batch": 1, "version": 1})


def test_syntax_and_compile_errors_are_reported_as_php_l_reports_them(shop: Shop) -> None:
    extra = {"lib/broken.php": PARSE_ERROR, "lib/deep/twice.php": COMPILE_ERROR}
    make_plugin_zip(shop.repo, "shop-cart", "1.2.0", plugin_files("1.2.0", extra))
    shim, log = php_shim(shop.host_dir)
    inv = write_inventory(shop, envs=("staging",))

    result = run(shop, inv, playbook_from_text(LINT_ONLY.format(php=shim)))

    assert result.exit_code == 1
    st = steps(result, "staging")
    assert st["compat"].status is StepStatus.FAILED
    assert st["update"].status is StepStatus.ROLLED_BACK
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.0.0"
    reference = shop.tmp / "reference"
    for rel, text in extra.items():
        (reference / rel).parent.mkdir(parents=True, exist_ok=True)
        (reference / rel).write_text(text)
    expected = sorted(f"plugin shop-cart 1.2.0: {rel}: {php_l_first_error(reference, rel)}" for rel in extra)
    assert expected[0] == (
        "plugin shop-cart 1.2.0: lib/broken.php: PHP Parse error:  syntax error, "
        'unexpected token ";" in ./lib/broken.php on line 3'
    )
    assert sorted(st["compat"].data["failures"]) == expected
    assert Counter(log.read_text().split()) == Counter({"batch": 1, "version": 1})


def _local_lint(php: Path, tree: Path) -> tuple[list[str], Counter[str]]:
    """Run the lint script locally with ``php``; the failure lines and the shim's counts."""
    proc = subprocess.run(["sh", "-c", lint_script(str(php), str(tree), 5000)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    log = php.parent / "compat-php-starts.log"
    return sorted(proc.stdout.splitlines()), Counter(log.read_text().split())


@pytest.mark.parametrize("host", ["no-opcache", "batch-dies"])
def test_without_the_batch_every_file_gets_its_own_php_l_with_the_same_messages(tmp_path: Path, host: str) -> None:
    """A PHP without OPcache (the batch answers "cannot tell" for each file), or a batch process
    that dies: each file is linted by ``php -l`` as before, with the same messages."""
    tree = tmp_path / "plugin"
    files = {"a.php": GOOD.format(n=1), "lib/broken.php": PARSE_ERROR, "lib/twice.php": COMPILE_ERROR}
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    shim, _log = php_shim(tmp_path)
    real = tmp_path / "php-host"
    flags = "-n" if host == "no-opcache" else ""
    real.write_text(
        "#!/bin/sh\n"
        + (
            'for a in "$@"; do case "$a" in *MAINTKIT-LINT-DONE*) exit 139 ;; esac; done\n'
            if host == "batch-dies"
            else ""
        )
        + f'exec php {flags} "$@"\n'
    )
    real.chmod(0o755)
    shim.write_text(shim.read_text().replace('exec php "$@"', f'exec {real} "$@"'))

    failures, counts = _local_lint(shim, tree)

    php = ("php", "-n") if host == "no-opcache" else ("php",)
    expected = sorted(f"./{rel}\t{php_l_first_error(tree, rel, php)}" for rel in ("lib/broken.php", "lib/twice.php"))
    assert failures == expected
    assert counts == Counter({"batch": 1, "lint": 3})


BOOM = """<?php
if (isset($_GET['boom'])) {
    error_log('PHP Fatal error:  boom from the smoke request in ' . __FILE__ . ':3');
}
"""

SMOKE_THEN_LOGS = LINT_ONLY.replace("php: '{php}'}}", "php: '{php}', smoke: ['/?boom=1']}}")
assert SMOKE_THEN_LOGS != LINT_ONLY


def test_the_lint_and_the_log_read_share_one_round_trip_after_the_smoke_requests(shop: Shop) -> None:
    """compat.check sends its smoke requests first, then lints the updated package and reads what
    the error logs got since cms.update started in ONE command: a fatal error the smoke request
    logged is found, and no other command of the step lints or reads the log."""
    make_plugin_zip(shop.repo, "shop-cart", "1.1.0", plugin_files("1.1.0", {}))
    mu = shop.staging.path / "wp-content" / "mu-plugins"
    mu.mkdir(exist_ok=True)
    (mu / "boom.php").write_text(BOOM)
    chown_tree(mu, "deploy")
    shim, log = php_shim(shop.host_dir)
    inv = write_inventory(shop, envs=("staging",))
    rec = Recorder()

    result = run(shop, inv, playbook_from_text(SMOKE_THEN_LOGS.format(php=shim)), transport_factory=rec)

    st = steps(result, "staging")
    assert st["compat"].status is StepStatus.FAILED and st["update"].status is StepStatus.ROLLED_BACK
    error_log = str(shop.web.php_error_log)
    assert st["compat"].data["failures"] == [
        f"unknown package: new PHP error in {error_log}: PHP Fatal error:  boom from the smoke request "
        f"in {mu / 'boom.php'}:3"
    ]
    sent = [text for _, text in rec.by_host[shop.staging_host.ip].sent]
    lints = [text for text in sent if "MAINTKIT-LINT-DONE" in text]
    reads = [text for text in sent if "tail -c +" in text and error_log in text]
    assert len(lints) == 1 and reads == lints
    assert Counter(log.read_text().split()) == Counter({"batch": 1, "version": 1})
