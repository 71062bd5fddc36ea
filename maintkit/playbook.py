"""Playbooks: named, declarative YAML files of stages (one per environment) made of steps.

Loading validates everything that can be validated without contacting a host: the
structure, every action name, and every step's parameters against the action's
``Params`` model (values that contain templates are validated again once rendered,
before anything runs). Every problem names file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from maintkit._yaml import MAX_PROBLEMS, SourceMap, load_yaml, printable, pydantic_problems, read_yaml_text
from maintkit.errors import PlaybookError, Problem, RegistryError
from maintkit.registry import Registry, default_registry
from maintkit.templating import TemplateError, expression_references, has_template, template_problem

OnFailure = Literal["rollback", "stop", "continue"]
NotifyWhen = Literal["success", "failure", "changed", "alert"]
BUILTIN_DIR = Path(__file__).parent / "playbooks"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Step(_Model):
    """One step: an action with parameters."""

    id: str = Field("", description="Unique within the stage; defaults from the action name")
    name: str | None = Field(None, description="Human-readable label")
    action: str = Field(..., description="Action name, e.g. deploy.release")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="Action parameters")
    when: str | None = Field(None, description="Sandboxed template expression; the step runs only when true")
    on_failure: OnFailure | None = Field(None, description="Overrides the playbook's on_failure")

    @property
    def label(self) -> str:
        """Name for humans."""
        return self.name or self.id


class Stage(_Model):
    """The steps for one environment."""

    env: str = Field(..., description="Environment name from the inventory")
    name: str | None = None
    promote: str | None = Field(None, description="Install exactly what this earlier environment validated")
    steps: list[Step] = Field(..., min_length=1)


def _on_failure_only() -> list[NotifyWhen]:
    return ["failure"]


class Notify(_Model):
    """Where to send a notification when a run ends."""

    url: str = Field(..., description="apprise URL or https webhook; may use {{ secrets.X }}")
    on: list[NotifyWhen] = Field(default_factory=lambda: _on_failure_only())

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean True
        if isinstance(data, dict) and True in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


class Alerts(_Model):
    """A watching playbook (``health``): its health record, incidents and alerts (docs/health.md)."""

    after: int = Field(2, ge=1, le=1000, description="Alert after this many consecutive failures of a check")


class Playbook(_Model):
    """A named playbook."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    targets: list[str] = Field(default_factory=lambda: ["all"], description="Site and group names, or all")
    concurrency: int = Field(4, ge=1, le=1000, description="Sites at once")
    on_failure: OnFailure = "rollback"
    canary: int = Field(0, ge=0, description="Run this many sites first; stop if any fails")
    max_fail_percentage: float | None = Field(None, ge=0, le=100, description="Stop starting sites above this")
    vars: dict[str, Any] = Field(default_factory=dict)
    notify: list[Notify] = Field(default_factory=list)
    alerts: Alerts | None = Field(None, description="Watching playbook: health record, incidents, alerts")
    stages: list[Stage] = Field(..., min_length=1)
    path: str | None = Field(None, exclude=True)

    @field_validator("targets", mode="before")
    @classmethod
    def _targets_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _ids(self) -> Playbook:
        for stage in self.stages:
            seen: dict[str, int] = {}
            for step in stage.steps:
                explicit = bool(step.id)
                base = step.id or step.action
                n = seen.get(base, 0) + 1
                seen[base] = n
                if n > 1:
                    if explicit:
                        raise ValueError(f"step id {base!r} is used twice in stage {stage.env!r}")
                    step.id = f"{base}#{n}"
                else:
                    step.id = base
        return self

    def stage_for(self, env: str) -> Stage | None:
        """The stage of an environment."""
        return next((s for s in self.stages if s.env == env), None)


@dataclass
class LoadedPlaybook:
    """A playbook with where it came from (for errors and the audit log)."""

    playbook: Playbook
    source: SourceMap
    text: str


def validate_params(
    registry: Registry, step: Step, loc: tuple[str | int, ...], source: SourceMap, *, rendered: bool = False
) -> list[Problem]:
    """Validate a step's action name and parameters; templated values are tolerated unless ``rendered``."""
    problems: list[Problem] = []
    if step.action not in registry:
        hint = registry.suggest(step.action) if len(step.action) <= 100 else None
        msg = f"unknown action {printable(repr(step.action), 120)}" + (f" (did you mean {hint!r}?)" if hint else "")
        return [source.problem((*loc, "action"), msg + "; see `maint actions`")]
    try:
        cls = registry.get(step.action)
    except RegistryError as exc:
        return [source.problem((*loc, "action"), str(exc))]
    problems.extend(_template_problems(step.with_, (*loc, "with"), source))
    try:
        cls.Params.model_validate(step.with_)
    except ValidationError as exc:
        for err in exc.errors():
            value = _dig(step.with_, err["loc"]) if err["loc"] else step.with_
            # a templated value is validated again once rendered, before anything runs
            if not rendered and err["type"] not in ("extra_forbidden", "missing") and has_template(value):
                continue
            path = (*loc, "with", *err["loc"])
            msg = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
            if err["type"] == "missing":
                msg = "parameter required"
            problems.append(source.problem(path, msg))
    return problems


#: most templated strings (``with:`` values with ``{{ }}`` and ``when:`` conditions) in one playbook
MAX_TEMPLATES = 1_000


def _template_strings(value: Any, loc: tuple[str | int, ...]) -> list[tuple[str, tuple[str | int, ...]]]:
    """Every string with template syntax inside ``value``, with its path (iteratively; depth is bounded)."""
    found: list[tuple[str, tuple[str | int, ...]]] = []
    todo: list[tuple[Any, tuple[str | int, ...]]] = [(value, loc)]
    while todo:
        item, where = todo.pop()
        if isinstance(item, dict):
            todo.extend((v, (*where, str(k))) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            todo.extend((v, (*where, i)) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, str) and has_template(item):
            found.append((item, where))
    return found


def _template_problems(value: Any, loc: tuple[str | int, ...], source: SourceMap) -> list[Problem]:
    """Problems of the templated strings inside ``value`` (see :func:`template_problem`)."""
    problems: list[Problem] = []
    for text, where in _template_strings(value, loc):
        if (err := template_problem(text)) is not None:
            problems.append(source.problem(where, err))
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


#: names a ``when:`` expression may use (the runner's template context, plus step facts)
WHEN_NAMES = frozenset({"site", "env", "vars", "secrets", "run", "playbook", "steps", "stages", "will_change"})
#: what ``when:`` can read of an earlier step
STEP_FACTS = frozenset({"status", "changed"})


def _when_problem(stage: Stage, i: int, earlier: dict[str, list[str]]) -> str | None:
    """Why step ``i`` of ``stage`` has a ``when:`` that cannot work at run time, or None.

    ``earlier`` maps the environments of the earlier stages to their step ids.
    """
    try:
        refs = expression_references(stage.steps[i].when or "")
    except TemplateError as exc:
        return exc.problems[0].message
    ids = [s.id for s in stage.steps]
    seen = {**earlier, stage.env: ids[:i]}  # runtime facts: earlier stages and this stage so far
    for kind, names in refs:
        msg = _ref_problem(kind, names, ids, i, printable(repr(stage.env), 80), seen)
        if msg:
            return msg
    return None


def _ref_problem(
    kind: str, names: tuple[str, ...], ids: list[str], i: int, env: str, earlier: dict[str, list[str]]
) -> str | None:
    """The problem of one reference of a ``when:`` expression (see ``expression_references``)."""
    shown = [printable(repr(n), 80) for n in names]
    if kind == "name" and names[0] not in WHEN_NAMES:
        return f"unknown name {shown[0]} (a condition can use {', '.join(sorted(WHEN_NAMES))})"
    if kind == "steps" and names[0] not in ids[:i]:
        if names[0] == ids[i]:
            return f"steps[{shown[0]}] is this step itself; a condition reads earlier steps"
        if names[0] in ids[i + 1 :]:
            return f"steps[{shown[0]}] is not an earlier step of stage {env} (use will_change({shown[0]}))"
        return f"steps[{shown[0]}]: no earlier step {shown[0]} in stage {env}"
    if kind in ("stage", "stages") and names[0] not in earlier:
        return f"stages[{shown[0]}]: no earlier stage {shown[0]}"
    if kind == "stages" and names[1] not in earlier[names[0]]:
        return f"stages[{shown[0]}][{shown[1]}]: no earlier step {shown[1]} in stage {shown[0]}"
    if kind == "fact" and names[-1] not in STEP_FACTS:
        return f"a step has no {shown[-1]} (a condition can read {', '.join(sorted(STEP_FACTS))})"
    if kind == "will_change":
        if not names:
            return "will_change takes one step id in quotes, e.g. will_change('update')"
        if names[0] not in ids[i + 1 :]:
            return f"will_change({shown[0]}): no later step {shown[0]} in stage {env}"
    return None


def _dig(data: Any, loc: tuple[Any, ...]) -> Any:
    """The value at ``loc``, or the deepest value on the way (pydantic adds union member
    names such as ``bool`` or ``list[str]`` to locations; they are not keys)."""
    for key in loc:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return data
    return data


def parse_playbook(data: Any, source: SourceMap, registry: Registry | None = None) -> Playbook:
    """Validate parsed playbook data, including action names and parameters."""
    registry = registry or default_registry()
    if not isinstance(data, dict):
        raise PlaybookError(source.problem((), "a playbook must be a mapping with 'name' and 'stages'"))
    try:
        pb = Playbook.model_validate(data)
    except ValidationError as exc:
        raise PlaybookError(pydantic_problems(exc, source)) from None
    problems: list[Problem] = []
    envs_seen: set[str] = set()
    earlier: dict[str, list[str]] = {}
    templates = 0
    for si, stage in enumerate(pb.stages):
        if len(problems) >= MAX_PROBLEMS:
            break
        if stage.env in envs_seen:
            env = printable(repr(stage.env), 80)
            problems.append(source.problem(("stages", si, "env"), f"environment {env} has two stages"))
        if stage.promote and stage.promote not in envs_seen:
            problems.append(
                source.problem(
                    ("stages", si, "promote"),
                    f"promote names {printable(repr(stage.promote), 80)}, which is not an earlier stage",
                )
            )
        envs_seen.add(stage.env)
        for i, step in enumerate(stage.steps):
            if len(problems) >= MAX_PROBLEMS:
                break
            templates += len(_template_strings(step.with_, ())) + (step.when is not None)
            if templates > MAX_TEMPLATES:
                msg = f"more than {MAX_TEMPLATES} templated values and conditions in one playbook; refusing it"
                raise PlaybookError([*problems[: MAX_PROBLEMS - 1], source.problem(("stages", si, "steps", i), msg)])
            problems.extend(validate_params(registry, step, ("stages", si, "steps", i), source))
            if step.when is not None and (werr := _when_problem(stage, i, earlier)):
                problems.append(source.problem(("stages", si, "steps", i, "when"), werr))
        earlier[stage.env] = [s.id for s in stage.steps]
    if problems:
        raise PlaybookError(problems[:MAX_PROBLEMS])
    pb.path = source.file
    return pb


def find_playbook(name_or_path: str, search_dir: Path | None = None) -> Path:
    """Find a playbook: a path, then ``./playbooks/NAME.yml``, then the built-ins."""
    p = Path(name_or_path)
    if p.suffix in (".yml", ".yaml") or "/" in name_or_path:
        if p.is_file():
            return p
        raise PlaybookError(Problem(name_or_path, None, "", "no such playbook file"))
    for directory in (search_dir or Path("playbooks"), BUILTIN_DIR):
        for ext in (".yml", ".yaml"):
            candidate = directory / f"{name_or_path}{ext}"
            if candidate.is_file():
                return candidate
    known = ", ".join(sorted(n for n, _ in list_playbooks(search_dir))) or "none"
    raise PlaybookError(Problem(name_or_path, None, "", f"no playbook named {name_or_path!r} (known: {known})"))


def list_playbooks(search_dir: Path | None = None) -> list[tuple[str, Path]]:
    """(name, path) of local playbooks, then built-ins not shadowed by them."""
    out: dict[str, Path] = {}
    for directory in (search_dir or Path("playbooks"), BUILTIN_DIR):
        if directory.is_dir():
            for f in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
                out.setdefault(f.stem, f)
    return sorted(out.items())


def load_playbook_full(name_or_path: str | Path, registry: Registry | None = None) -> LoadedPlaybook:
    """Load a playbook by name or path, keeping its source text and line map."""
    path = find_playbook(str(name_or_path))
    data, source, text = read_yaml_text(path, PlaybookError)
    pb = parse_playbook(data, source, registry)
    return LoadedPlaybook(pb, source, text)


def load_playbook(name_or_path: str | Path, registry: Registry | None = None) -> Playbook:
    """Load and validate a playbook by name (``./playbooks``, then built-ins) or path.

    Raises :class:`~maintkit.errors.PlaybookError` naming file, line and field of every problem.
    """
    return load_playbook_full(name_or_path, registry).playbook


def playbook_from_text(text: str, file: str = "<playbook>", registry: Registry | None = None) -> LoadedPlaybook:
    """Parse a playbook from a string (library use and tests)."""
    data, source = load_yaml(text, file, PlaybookError)
    return LoadedPlaybook(parse_playbook(data, source, registry), source, text)
