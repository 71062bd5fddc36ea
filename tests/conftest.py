"""Test configuration: real lab servers are provided by the plugins below."""

pytest_plugins = ["tests.lab.sshd_fixtures", "tests.lab.server_fixtures"]
