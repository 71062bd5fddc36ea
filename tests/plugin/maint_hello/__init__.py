"""A plugin action: ensure a greeting file exists (idempotent, reversible)."""

from __future__ import annotations

import hashlib

from pydantic import Field

from maintkit import Action, Change, Check, Context, Params
from maintkit.probes import FileState


class GreetParams(Params):
    """Who to greet."""

    who: str = Field(..., description="Name to greet")


class Greet(Action[GreetParams]):
    """Write <path>/hello.txt with a greeting."""

    name = "hello.greet"
    Params = GreetParams
    summary = "Write a greeting file (test plugin)."
    reversible = True

    def _file(self, ctx: Context) -> str:
        return f"{ctx.path}/hello.txt"

    def _data(self) -> bytes:
        return f"hello {self.params.who}\n".encode()

    def probes(self, ctx: Context) -> list[FileState]:
        return [FileState(self._file(ctx))]

    def check(self, ctx: Context) -> Check:
        info = ctx.probe(FileState(self._file(ctx)))
        if info.exists and info.sha256 == hashlib.sha256(self._data()).hexdigest():
            return Check.ok("greeting in place")
        return Check.change("greeting missing or different")

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        ctx.put(self._data(), self._file(ctx), mode=0o644)
        return [Change(self._file(ctx), "written")]

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        ctx.run(["rm", "-f", "--", self._file(ctx)])
