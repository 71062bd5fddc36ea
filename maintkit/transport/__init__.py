"""Transports run commands on hosts: over SSH (ssh.py) or on this machine (local.py)."""

from maintkit.transport.base import Transport, build_command, quote

__all__ = ["Transport", "build_command", "quote"]
