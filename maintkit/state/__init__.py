"""The state store: run folders and the per-site index, kept locally or shared (git, plugins).

See :mod:`maintkit.state.base` for the contract and docs/state.md for how to choose and
write backends.
"""

from __future__ import annotations

from maintkit.state.base import GROUP, StateSpec, StateStore
from maintkit.state.local import LocalStore

__all__ = ["GROUP", "LocalStore", "StateSpec", "StateStore"]
