"""The plan: every step of every targeted site rendered and validated before anything connects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from maintkit.action import Action
from maintkit.audit import Redactor
from maintkit.errors import ConfigError, MaintkitError, PlaybookError, Problem
from maintkit.inventory import Environment, Inventory, Site
from maintkit.playbook import LoadedPlaybook, Playbook, Stage, Step
from maintkit.registry import Registry
from maintkit.templating import Secrets, TemplateError, render


@dataclass
class PlannedStep:
    """A step rendered and validated for one site environment."""

    step: Step
    action: Action[Any]


@dataclass
class PlannedStage:
    """A stage rendered for one site."""

    stage: Stage
    env: Environment
    steps: list[PlannedStep]
    render_context: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlanScope:
    """What a run targets and how it renders: the run id, plan mode, ``--limit`` and ``--env``."""

    run_id: str
    check: bool = False
    limit: list[str] | None = None
    only_env: str | None = None


class Planner:
    """Renders and validates a playbook for the sites of an inventory (once per run)."""

    def __init__(
        self,
        playbook: Playbook,
        loaded: LoadedPlaybook | None,
        inventory: Inventory,
        registry: Registry,
        *,
        redactor: Redactor,
        environ: Mapping[str, str],
        scope: PlanScope,
    ) -> None:
        self.playbook = playbook
        self.loaded = loaded
        self.inventory = inventory
        self.registry = registry
        self.redactor = redactor
        self.environ = environ
        self.scope = scope
        self._plans: dict[str, list[PlannedStage]] | None = None

    def sites(self) -> list[Site]:
        """The sites this run targets (playbook targets, narrowed by ``limit``)."""
        chosen = self.inventory.resolve_targets(self.playbook.targets)
        if self.scope.limit:
            limited = {s.name for s in self.inventory.resolve_targets(self.scope.limit)}
            chosen = [s for s in chosen if s.name in limited]
            if not chosen:
                raise ConfigError(Problem("--limit", None, "limit", "no targeted site matches the limit"))
        return chosen

    def stages(self) -> list[Stage]:
        """The playbook's stages this run executes (all, or the one of ``--env``)."""
        only = self.scope.only_env
        if only is None:
            return list(self.playbook.stages)
        stages = [s for s in self.playbook.stages if s.env == only]
        if not stages:
            known = ", ".join(s.env for s in self.playbook.stages)
            raise ConfigError(Problem("--env", None, "env", f"the playbook has no stage for {only!r} ({known})"))
        return stages

    def _source_problem(self, loc: tuple[str | int, ...], message: str) -> Problem:
        message = self.redactor.redact_text(message)  # validation errors echo rendered values
        if self.loaded is not None:
            return self.loaded.source.problem(loc, message)
        return Problem(self.playbook.path or self.playbook.name, None, ".".join(map(str, loc)), message)

    def render_context(self, site: Site, env: Environment, secrets: Secrets) -> dict[str, Any]:
        """The template context of one site environment."""
        merged = {**self.playbook.vars, **site.vars_for(env)}
        return {
            "site": {"name": site.name, "platform": site.platform, "vars": site.vars},
            "env": {
                "name": env.name,
                "host": env.host,
                "path": env.path,
                "url": (env.url or "").rstrip("/"),
                "platform": env.platform,
                "vars": merged,
            },
            "vars": merged,
            "secrets": secrets,
            "run": {"id": self.scope.run_id, "check": self.scope.check},
            "playbook": {"name": self.playbook.name},
        }

    def plan(self) -> dict[str, list[PlannedStage]]:
        """Render and validate every step for every site; raise ConfigError listing all problems."""
        if self._plans is not None:
            return self._plans
        problems: list[Problem] = []
        plans: dict[str, list[PlannedStage]] = {}
        secrets = Secrets(self.environ, on_read=self.redactor.add_secret)
        stage_index = {id(s): i for i, s in enumerate(self.playbook.stages)}
        for site in self.sites():
            site_plan: list[PlannedStage] = []
            for stage in self.stages():
                planned = self._plan_stage(site, stage, stage_index[id(stage)], secrets, problems)
                if planned is not None:
                    site_plan.append(planned)
            plans[site.name] = site_plan
        if problems:
            raise PlaybookError(problems)
        self._plans = plans
        return plans

    def _plan_stage(
        self, site: Site, stage: Stage, si: int, secrets: Secrets, problems: list[Problem]
    ) -> PlannedStage | None:
        if stage.env not in site.environments:
            problems.append(
                self._source_problem(
                    ("stages", si, "env"), f"site {site.name!r} has no environment {stage.env!r} in the inventory"
                )
            )
            return None
        env = site.environments[stage.env]
        rctx = self.render_context(site, env, secrets)
        steps: list[PlannedStep] = []
        for i, step in enumerate(stage.steps):
            loc: tuple[str | int, ...] = ("stages", si, "steps", i)
            planned = self._plan_step(step, rctx, loc, site, problems)
            if planned is not None:
                steps.append(planned)
        return PlannedStage(stage, env, steps, rctx)

    def _plan_step(
        self, step: Step, rctx: dict[str, Any], loc: tuple[str | int, ...], site: Site, problems: list[Problem]
    ) -> PlannedStep | None:
        try:
            cls = self.registry.get(step.action)
        except MaintkitError as exc:
            problems.append(self._source_problem((*loc, "action"), str(exc)))
            return None
        try:
            rendered = render(step.with_, rctx)
        except TemplateError as exc:
            problems.append(self._source_problem((*loc, "with"), f"site {site.name}: {exc.problems[0].message}"))
            return None
        try:
            params: BaseModel = cls.Params.model_validate(rendered)
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(self._source_problem((*loc, "with", *err["loc"]), f"site {site.name}: {err['msg']}"))
            return None
        return PlannedStep(step, cls(params, step.id))


__all__ = ["PlanScope", "PlannedStage", "PlannedStep", "Planner"]
