"""Test configuration: real lab servers are provided by the plugins below."""

pytest_plugins = ["tests.lab.sshd_fixtures", "tests.lab.server_fixtures", "tests.lab.wp_fixtures"]


from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from maintkit._text import forget_secrets  # noqa: E402


@pytest.fixture(autouse=True)
def _forget_known_secrets() -> Iterator[None]:
    """Each test starts with an empty process-wide secret registry (values from earlier tests
    would otherwise be masked in this test's output)."""
    yield
    forget_secrets()


@pytest.fixture(scope="session", autouse=True)
def _hostile_dotfiles() -> Iterator[None]:
    """For the whole session, root and deploy have a ``~/.my.cnf`` for another database, a
    ``~/.ssh/config`` that redirects every host and a ``~/.gitconfig`` that rewrites URLs and
    demands signed commits (see :mod:`tests.hostile_dotfiles`); the originals are restored
    afterwards. maintkit must do what it was told regardless."""
    import os

    from tests.hostile_dotfiles import hostile_dotfiles

    if os.geteuid() == 0:
        from tests.lab.sshd import ensure_login_user

        ensure_login_user()  # deploy gets its dotfiles too, even before the lab starts
    with hostile_dotfiles():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (``CI`` set, as ``.ci/run`` does) a skipped test fails: a missing lab component
    (chromium, ClamAV, composer, PHP...) must fail the run, not pass it silently."""
    import os

    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every lab component must be present: {report.longrepr}"
