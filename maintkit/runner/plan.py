"""The plan: every step of every targeted site rendered and validated before anything connects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from maintkit.action import Action
from maintkit.audit import Redactor
from maintkit.errors import ConfigError, MaintkitError, PlaybookError, Problem
from maintkit.inventory import Environment, Inventory, Site, select_sites
from maintkit.playbook import LoadedPlaybook, Playbook, Stage, Step
from maintkit.registry import Registry
from maintkit.runner.select import Skips, StepSelection, missing_promotions, promotion_message, skipped_steps
from maintkit.templating import Secrets, TemplateError, render

#: a stage's ``env`` that means every environment of each site (the ``health`` playbook)
EVERY_ENV = "*"


@dataclass
class PlannedStep:
    """A step rendered and validated for one site environment."""

    step: Step
    action: Action[Any]
    #: why ``--steps``/``--skip-steps``/``--start-at`` skip this step, or None: it runs
    skip: str | None = None


@dataclass
class PlannedStage:
    """A stage rendered for one site."""

    stage: Stage
    env: Environment
    steps: list[PlannedStep]
    render_context: dict[str, Any] = field(default_factory=dict)
    #: the site has no environment to try the update on first (``direct_updates: true``): this
    #: stage updates directly instead of promoting
    direct: bool = False


@dataclass
class PlanScope:
    """What a run targets and how it renders: the run id, plan mode, ``--limit``, ``--env``,
    ``-e`` extra vars, the step selection and whether ``--promote-from`` was given."""

    run_id: str
    check: bool = False
    limit: list[str] | None = None
    only_env: str | None = None
    extra_vars: dict[str, Any] = field(default_factory=dict)
    selection: StepSelection = field(default_factory=StepSelection)
    promote_from: bool = False


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
        #: what a plan cannot know and why (a promotion without a lock), shown with its result
        self.notes: list[str] = []

    def sites(self) -> list[Site]:
        """The sites this run targets (playbook targets, narrowed by ``limit``: docs/cli.md)."""
        chosen = self._targeted()
        if self.scope.limit:
            limited = set(select_sites(self.inventory, self.scope.limit))
            narrowed = [s for s in chosen if s.name in limited]
            if not narrowed:
                targets = ", ".join(self.playbook.targets)
                why = f"no site the playbook targets ({targets}) matches {', '.join(self.scope.limit)!r}"
                raise ConfigError(Problem("--limit", None, "", why))
            chosen = narrowed
        return chosen

    def _targeted(self) -> list[Site]:
        """The sites the playbook's ``targets`` name; an unknown name is reported at the playbook's ``targets`` line."""
        try:
            return self.inventory.resolve_targets(self.playbook.targets)
        except ConfigError as exc:
            if self.loaded is None:
                raise
            source = self.loaded.source
            problems = [source.problem(("targets",), f"{p.message} (not in {p.file})") for p in exc.problems]
            raise PlaybookError(problems) from None

    def skips(self) -> Skips:
        """The steps the selection skips; ConfigError for an unknown id or a promotion without a lock.

        In run mode a promoting stage that has no lock to install is refused before anything
        runs (nothing is backed up first); a plan notes it in :attr:`notes` instead.
        """
        stages = self.stages()
        skips = skipped_steps(self.scope.selection, stages)
        missing = [m for m in missing_promotions(stages, skips, self.scope.promote_from) if not self._all_direct(m[1])]
        messages = [promotion_message(env, source) for env, source in missing]
        if messages and not self.scope.check:
            raise ConfigError([Problem("--promote-from", None, "", m) for m in messages])
        self.notes = messages
        return skips

    def _all_direct(self, source: str) -> bool:
        """Every targeted site lacks ``source`` and updates directly: nothing to promote from, nothing missing."""
        sites = self.sites()
        return bool(sites) and all(source not in s.environments and s.direct_updates for s in sites)

    def stages(self) -> list[Stage]:
        """The playbook's stages this run executes (all, or the one of ``--env``)."""
        only = self.scope.only_env
        if only is None:
            return list(self.playbook.stages)
        stages = [s for s in self.playbook.stages if s.env in (only, EVERY_ENV)]
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
        extra = self.scope.extra_vars
        merged = {**self.playbook.vars, **site.vars_for(env), **extra}
        return {
            "site": {"name": site.name, "platform": site.platform, "vars": {**site.vars, **extra}},
            "env": {
                "name": env.name,
                "host": env.host,
                "path": env.path,
                "url": (env.url or "").rstrip("/"),
                "platform": env.platform,
                "vars": merged,
            },
            "vars": merged,
            "secrets": secrets.scoped(self.inventory.secret_sources(site, env)),
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
        skips = self.skips()
        for site in self.sites():
            site_plan: list[PlannedStage] = []
            for stage in self.stages():
                for concrete in self._expand(site, stage):
                    planned = self._plan_stage(site, concrete, stage_index[id(stage)], secrets, problems, skips)
                    if planned is not None:
                        site_plan.append(planned)
            plans[site.name] = site_plan
            self.notes += [direct_note(site.name, p.env.name) for p in site_plan if p.direct]
        if problems:
            raise PlaybookError(problems)
        self._plans = plans
        return plans

    def _expand(self, site: Site, stage: Stage) -> list[Stage]:
        """``stage``, or for ``env: "*"`` one copy per environment of ``site`` (only ``--env``'s when given)."""
        if stage.env != EVERY_ENV:
            return [stage]
        only = self.scope.only_env
        return [stage.model_copy(update={"env": e}) for e in site.environments if only is None or e == only]

    def _untried(self, site: Site, stage: Stage, si: int, problems: list[Problem]) -> tuple[bool, Stage]:
        """Whether ``stage`` runs for ``site``, and as what: a stage trying updates first on an environment
        the site lacks is left out with ``direct_updates: true`` (else a problem naming the flag), and the
        stage promoting from it becomes a direct update."""
        promoters = [s.env for s in self.playbook.stages if s.promote == stage.env]
        if stage.env not in site.environments:
            if not promoters:
                why = f"site {site.name!r} has no environment {stage.env!r} in the inventory"
                problems.append(self._source_problem(("stages", si, "env"), why))
            elif not site.direct_updates:
                problems.append(self._source_problem(("stages", si, "env"), untried_message(site.name, stage.env)))
            return False, stage
        source = stage.promote
        if source is None or source in site.environments:
            return True, stage
        if site.direct_updates:
            return True, stage.model_copy(update={"promote": None})
        if all(s.env != source for s in self.stages()):  # otherwise the source stage reported it
            problems.append(self._source_problem(("stages", si, "promote"), untried_message(site.name, source)))
        return False, stage

    def _plan_stage(
        self, site: Site, stage: Stage, si: int, secrets: Secrets, problems: list[Problem], skips: Skips
    ) -> PlannedStage | None:
        direct = bool(stage.promote) and stage.promote not in site.environments
        runs, stage = self._untried(site, stage, si, problems)
        if not runs:
            return None
        env = site.environments[stage.env]
        rctx = self.render_context(site, env, secrets)
        if direct:
            rctx["vars"]["direct_update"] = True  # the same dict as env.vars: `when:` and templates see it
        steps: list[PlannedStep] = []
        for i, step in enumerate(stage.steps):
            loc: tuple[str | int, ...] = ("stages", si, "steps", i)
            planned = self._plan_step(step, rctx, loc, site, problems)
            if planned is not None:
                planned.skip = skips.reason(stage.env, step.id) or skips.reason(EVERY_ENV, step.id)
                steps.append(planned)
        return PlannedStage(stage, env, steps, rctx, direct=direct)

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


def untried_message(site: str, env: str) -> str:
    """The error for a site without the environment a playbook tries updates on first."""
    return (
        f"site {site!r} has no environment {env!r} to try the update on first: add it to the inventory, "
        f"or opt in with `direct_updates: true` on the site (then the update runs without trying on {env} "
        "first: backup, maintenance window, checks, automatic rollback)"
    )


def direct_note(site: str, env: str) -> str:
    """The warning of a run that updates an environment directly."""
    return f"warning: site {site}: {env} updated without trying on staging first (direct_updates: true)"


def skipped_note(planned: PlannedStage, ps: PlannedStep) -> str:
    """For an action that depends on the steps before it: which of them the selection skipped ("" if none)."""
    if not ps.action.depends_on_previous:
        return ""
    before = planned.steps[: planned.steps.index(ps)]
    skipped = [f"{p.step.id} ({p.skip})" for p in before if p.skip is not None]
    if not skipped:
        return ""
    return f"; note: earlier steps were skipped, so this checks the site without them: {', '.join(skipped)}"


__all__ = [
    "EVERY_ENV",
    "PlanScope",
    "PlannedStage",
    "PlannedStep",
    "Planner",
    "direct_note",
    "skipped_note",
    "untried_message",
]
