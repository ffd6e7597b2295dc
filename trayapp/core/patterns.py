"""Patterns: what a sync program declares, the context its updater gets, and the registry.

A *pattern* is a small sync program (the feed importer, the Gmail importer, a third party's).
It declares everything the engine needs to know before running it (settings schema, OAuth scopes,
schedule, the cells it reads and writes, its collections), so that a charm can be validated and
bound when it is created instead of failing at its first run. Pattern authors reach all of this
through :mod:`trayapp.api`; this module is the implementation behind it.

The registry knows no pattern by itself: the app's start-up code passes the built-ins in
(:func:`trayapp.patterns.default_registry`), and third-party patterns are found through the
``trayapp.patterns`` entry-point group. A broken plugin becomes a :class:`PluginProblem` that the
app can show; it never stops the app from starting.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from trayapp.core.credentials import Credential, CredentialSpec, check_credential
from trayapp.core.errors import ExportError, NotFoundError, SettingsError
from trayapp.core.outcomes import RunReport

if TYPE_CHECKING:
    import httpx

    from trayapp.core.cells import Cell, DerivedCell
    from trayapp.core.store import Collection, Store
    from trayapp.google.services import GoogleServices

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "trayapp.patterns"

# The version of the plugin API (``trayapp.api``) this app provides. It grows by one when names a
# plugin may use are added; a pattern sets ``requires_api`` to the version whose names it uses,
# and an app older than that refuses it with a clear message instead of a failing import.
API_VERSION = 2  # 2: Pattern.credential (ApiToken, OAuth2Provider) and ctx.credential

# Ids appear in cell names (``charm:<id>:<slot>``), on the command line and in --json output, so
# they are restricted to lower-case slugs.
_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_SLOT_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

Owner = Literal["charm", "account"]


@dataclass(frozen=True, slots=True)
class CellSpec:
    """One input/output slot of a pattern.

    ``writes`` declares that the updater writes the slot (its cursor, a token write-back); that is
    what lets the engine refuse, when the charm is created, a binding of that slot to a read-only
    (derived) cell, instead of the write failing at run time.

    ``owner="charm"`` slots bind to ``charm:<charm id>:<name>`` by default; ``owner="account"``
    slots (the auth cell) bind to ``account:<account id>:<name>`` and require the charm to have an
    account. ``type`` is the value type the store validates (any JSON value by default).

    Example::

        cells = (
            CellSpec("state", writes=True, default={}),
            CellSpec("auth", writes=True, owner="account"),
        )
    """

    name: str
    writes: bool = False
    owner: Owner = "charm"
    default: Any = None
    type: Any = Any
    description: str = ""


class NoSettings(BaseModel):
    """The settings model of a pattern that has none."""


S = TypeVar("S", bound=BaseModel)


class UpdateContext(Generic[S]):
    """Everything one run of a charm's updater may use, and nothing else.

    The engine builds a fresh context for every run. Slots and collections are addressed by the
    names the pattern declared, never by cell names, so the same pattern works whatever the
    charm's bindings are.

    Example::

        async def bg_updater(self, ctx: UpdateContext[FeedSettings]) -> RunReport:
            state = ctx.cell("state")
            items = ctx.collection("items")
            resp = await ctx.http.get(str(ctx.settings.url))
            with ctx.transaction():          # items and cursor commit together, or not at all
                added = sum(items.upsert(k, v) == "added" for k, v in parse(resp))
                state.set({"etag": resp.headers.get("etag")})
            ctx.log.info("%d new items", added)
            return RunReport(added=added)
    """

    def __init__(
        self,
        *,
        charm_id: str,
        settings: S,
        account_id: str | None,
        store: Store,
        specs: Mapping[str, CellSpec],
        bindings: Mapping[str, str],
        collections: tuple[str, ...],
        http: httpx.AsyncClient,
        google: GoogleServices | None = None,
        log: logging.LoggerAdapter[logging.Logger] | None = None,
        now: Callable[[], datetime] | None = None,
        on_progress: Callable[[int, int | None, str], None] | None = None,
        credential: Credential | None = None,
    ) -> None:
        self.charm_id = charm_id
        self.settings = settings
        self.account_id = account_id
        self.http = http
        # The account's Google clients (``.gmail()``, ``.calendar()``) for a pattern with an
        # account; None otherwise, and for an export (which reads only stored data).
        self.google: GoogleServices | None = google
        # The account's token for a pattern that declares ``credential`` (ApiToken or
        # OAuth2Provider); None otherwise, and for an export.
        self.credential: Credential | None = credential
        self.log: logging.LoggerAdapter[logging.Logger] = log or logging.LoggerAdapter(
            logging.getLogger(f"trayapp.charm.{charm_id}"), {"charm_id": charm_id}
        )
        self._store = store
        self._specs = dict(specs)
        self._bindings = dict(bindings)
        self._collections = collections
        self._now = now
        self._on_progress = on_progress

    def progress(self, done: int, total: int | None = None, unit: str = "items") -> None:
        """Say how far a long run is: ``done`` of ``total`` ``unit`` (total None: not known yet).

        Shown in the tray menu and tooltip ("Gmail: 1,200 of 5,000 messages") and in
        ``trayapp status --json`` while the run lasts; cleared when it ends. Cheap: call it after
        every stored batch. ``unit`` is a plural noun ("messages", "events").
        """
        if self._on_progress is not None:
            self._on_progress(
                max(0, int(done)), None if total is None else max(0, int(total)), unit
            )

    def cell(self, slot: str) -> Cell[Any] | DerivedCell[Any]:
        """The cell bound to ``slot`` (one the pattern declared in ``cells``)."""
        try:
            spec = self._specs[slot]
            name = self._bindings[slot]
        except KeyError:
            raise KeyError(
                f"pattern has no cell slot {slot!r}; declared slots: {sorted(self._specs)}"
            ) from None
        store = self._store
        try:
            existing = store.lookup(name)
        except NotFoundError:
            existing = None
        # A derived cell is returned as is: a write through it raises ReadOnlyCellError naming
        # it (binding checks refuse that at creation; this covers a view declared later). A cell
        # someone else declared with its real type (the account's auth cell) is shared as is.
        if existing is not None and (
            not existing.writable or (spec.type is Any and getattr(existing, "declared", False))
        ):
            return existing
        return store.cell(name, spec.type, default=spec.default)

    def collection(self, name: str) -> Collection:
        """The charm's keyed collection ``name`` (one the pattern declared in ``collections``)."""
        if name not in self._collections:
            raise KeyError(
                f"pattern has no collection {name!r}; "
                f"declared collections: {list(self._collections)}"
            )
        return self._store.collection(f"charm:{self.charm_id}:{name}")

    def transaction(self) -> AbstractContextManager[Any]:
        """Group writes so that they commit together (re-entrant; rolls back on error)."""
        return self._store.transaction()

    def now(self) -> datetime:
        """The engine clock's current time (timezone-aware UTC); use it instead of datetime.now."""
        return self._now() if self._now is not None else datetime.now(UTC)


class Pattern(Generic[S]):
    """Base class of every pattern. Subclass it, fill in the class attributes, write the updater.

    Example (a complete, if useless, pattern)::

        from datetime import timedelta
        from trayapp.api import BaseModel, CellSpec, Field, Pattern, RunReport, UpdateContext

        class CounterSettings(BaseModel):
            step: int = Field(1, ge=1, description="How much to add per run")

        class Counter(Pattern[CounterSettings]):
            id = "counter"
            title = "Counter"
            Settings = CounterSettings
            default_interval = timedelta(minutes=1)
            cells = (CellSpec("count", writes=True, default=0),)

            async def bg_updater(self, ctx: UpdateContext[CounterSettings]) -> RunReport:
                ctx.cell("count").update(lambda n: n + ctx.settings.step)
                return RunReport(updated=1)

    Register a third-party pattern in your package's ``pyproject.toml``::

        [project.entry-points."trayapp.patterns"]
        counter = "my_package.counter:Counter"

    The updater ends a run by returning a :class:`RunReport` or raising one of
    :class:`~trayapp.api.AuthRequired`, :class:`~trayapp.api.RateLimited`,
    :class:`~trayapp.api.Offline`, :class:`~trayapp.api.ServerError`,
    :class:`~trayapp.api.ConfigProblem` (docs/plugins.md, "Outcomes"). Any other exception is
    recorded as a ``bug`` in the pattern (with its traceback) and retried with backoff.
    """

    id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Settings: type[S]
    scopes: ClassVar[tuple[str, ...]] = ()
    # The login a non-Google service needs (trayapp.api.ApiToken / OAuth2Provider): charms of
    # this pattern then belong to an account of that service and get ``ctx.credential``.
    credential: ClassVar[CredentialSpec | None] = None
    default_interval: ClassVar[timedelta] = timedelta(minutes=30)
    timeout: ClassVar[timedelta] = timedelta(minutes=5)
    cells: ClassVar[tuple[CellSpec, ...]] = ()
    collections: ClassVar[tuple[str, ...]] = ()
    # Formats ``trayapp export`` offers for this pattern's data (e.g. "jsonl", "ics").
    export_formats: ClassVar[tuple[str, ...]] = ()
    # The version of what this pattern stores (its cells and collections). Raise it when a new
    # release stores something an older one cannot have written, and implement migrate_state.
    state_version: ClassVar[int] = 1
    # The trayapp.api version (trayapp.api.API_VERSION) this pattern was written against.
    requires_api: ClassVar[int] = 1

    async def bg_updater(self, ctx: UpdateContext[S]) -> RunReport:
        """One sync run. Must be overridden."""
        raise NotImplementedError

    def needs_reset(self, old: S, new: S) -> bool:
        """Whether a settings change invalidates what was synced so far.

        Return True when the old cursor and data no longer describe the new settings (say the
        feed URL changed); the engine then clears the charm's cells and collections and resyncs.
        """
        return False

    def migrate_state(self, ctx: UpdateContext[S], old_version: int) -> None:
        """Bring a charm's stored state from ``old_version`` up to :attr:`state_version`.

        Called before a run (inside one transaction, with the run's context) when the charm's
        stored state is older than this pattern's ``state_version``: read the old cells and
        collections through ``ctx`` and write the new shape. If it raises, nothing is changed,
        the run ends as a ``bug`` with the message, and the next run tries again. The default
        keeps the stored state as it is. Charms created before ``state_version`` existed are
        version 1; a new or reset charm starts at the current version (nothing to migrate).
        """

    # -- used by the engine -------------------------------------------------------------------

    def export(self, source: UpdateContext[S], fmt: str, dest: Path) -> int:
        """Write the charm's data to ``dest`` in ``fmt`` (one of ``export_formats``).

        Returns how many items were written. ``source`` is read-only in spirit: an export never
        changes the charm. Raise :class:`ExportError` for a request that cannot be met, saying
        what to change. The default refuses: a pattern opts in by overriding this.
        """
        raise ExportError(f"the {self.title or self.id} pattern has nothing to export")

    @property
    def needs_account(self) -> bool:
        return (
            bool(self.scopes)
            or self.credential is not None
            or any(spec.owner == "account" for spec in self.cells)
        )

    @property
    def service(self) -> str:
        """The service its charms' accounts belong to: the credential's, else ``google``."""
        return self.credential.service if self.credential is not None else "google"

    @property
    def service_title(self) -> str:
        return self.credential.title if self.credential is not None else "Google"

    def cell_spec(self, slot: str) -> CellSpec:
        for spec in self.cells:
            if spec.name == slot:
                return spec
        raise KeyError(slot)

    def settings_model(self) -> type[BaseModel]:
        return getattr(type(self), "Settings", NoSettings)

    def validate_settings(self, data: Mapping[str, Any]) -> S:
        """Validate user input into the Settings model, or raise one readable SettingsError.

        Unknown keys are refused even if the model would ignore them: a typo in a setting name
        must not silently leave the real setting at its default.
        """
        model = self.settings_model()
        problems: list[str] = []
        known = _field_names(model)
        for key in data:
            if key not in known:
                hint = f"known settings: {', '.join(sorted(known))}" if known else "it has none"
                problems.append(f"{key}: unknown setting ({hint})")
        try:
            validated = model.model_validate({k: v for k, v in data.items() if k in known})
        except ValidationError as exc:
            # Every bad field in the same line as the unknown ones, not one mistake per attempt.
            problems += describe_validation_error(exc, model)
        else:
            if not problems:
                return validated  # type: ignore[return-value]
        raise SettingsError(f"invalid settings for {self.id}: " + "; ".join(problems))

    def dump_settings(self, settings: BaseModel) -> dict[str, Any]:
        """The JSON form of validated settings, as persisted with the charm.

        Secret settings (typed ``SecretStr``) are persisted as :data:`SECRET_PLACEHOLDER`: their
        values live in the keyring (the engine keeps them there), never in the database.
        """
        data = settings.model_dump(mode="json")
        for name in self.secret_settings():
            if data.get(name) is not None:
                data[name] = SECRET_PLACEHOLDER
        return data

    def secret_settings(self) -> tuple[str, ...]:
        """The names of the settings typed ``SecretStr`` (or ``SecretStr | None``)."""
        return secret_fields(self.settings_model())


SECRET_PLACEHOLDER = "(kept in the keyring)"
"""What the database, ``--json`` and forms hold instead of a secret setting's value.

Given back unchanged (a form re-submitted without re-entering the secret, ``charms edit
--set`` of another setting), it means "keep the stored secret"."""


def secret_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """Top-level fields of ``model`` typed ``SecretStr`` or an optional ``SecretStr``."""
    # Imported here: pydantic loads its types module lazily, and loading it while another
    # module is half-imported trips PySide's import hook (seen under pytest-qt, depending on
    # which test module imports trayapp first).
    from pydantic import SecretStr

    names: list[str] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = typing.get_args(annotation) if typing.get_origin(annotation) else ()
        if annotation is SecretStr or SecretStr in args:
            names.append(name)
    return tuple(names)


def _field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
    return names


_PLAIN: dict[str, str] = {
    "missing": "required",
    "int_parsing": "not a whole number",
    "int_type": "not a whole number",
    "int_from_float": "not a whole number",
    "float_parsing": "not a number",
    "float_type": "not a number",
    "bool_parsing": "not true or false",
    "bool_type": "not true or false",
    "string_type": "not text",
    "list_type": "not a list",
    "dict_type": "not an object",
    "string_pattern_mismatch": "not in the expected format",
    "datetime_parsing": "not a date and time (use ISO 8601, e.g. 2024-05-01T09:00:00Z)",
    "date_parsing": "not a date (use YYYY-MM-DD)",
    "extra_forbidden": "unknown setting",
}


def describe_validation_error(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """Turn pydantic errors into ``field: problem`` phrases a user understands.

    The input value is never repeated back: a setting may hold something private.
    """
    out: list[str] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        kind = err["type"]
        ctx = err.get("ctx") or {}
        if kind.startswith("url_"):
            field_info = model.model_fields.get(str(err["loc"][0])) if err["loc"] else None
            annotation = repr(field_info.annotation) if field_info else ""
            schemes = str(ctx.get("expected_schemes", ""))
            if "Http" in annotation or "http" in schemes:
                text = "not a valid http(s) URL"
            else:
                text = "not a valid URL"
        elif kind in _PLAIN:
            text = _PLAIN[kind]
        elif kind == "greater_than_equal":
            text = f"must be at least {ctx.get('ge')}"
        elif kind == "greater_than":
            text = f"must be more than {ctx.get('gt')}"
        elif kind == "less_than_equal":
            text = f"must be at most {ctx.get('le')}"
        elif kind == "less_than":
            text = f"must be less than {ctx.get('lt')}"
        elif kind == "string_too_short":
            n = ctx.get("min_length", 1)
            text = "must not be empty" if n == 1 else f"must be at least {n} characters"
        elif kind == "string_too_long":
            text = f"must be at most {ctx.get('max_length')} characters"
        elif kind in ("too_short", "too_long"):
            text = err["msg"][0].lower() + err["msg"][1:]
        elif kind in ("literal_error", "enum"):
            text = f"must be one of {ctx.get('expected')}"
        elif kind == "value_error":
            text = str(err["msg"]).removeprefix("Value error, ")
        else:
            msg = str(err["msg"])
            text = msg[:1].lower() + msg[1:]
        out.append(f"{loc}: {text}")
    return out


# -- registry ---------------------------------------------------------------------------------


class PatternDeclarationError(Exception):
    """A pattern class that cannot be used as declared (a bug in the pattern, not user input)."""


def check_declaration(pattern: Pattern[Any]) -> None:
    """Refuse a pattern whose declaration would only fail later, in a charm's run."""
    cls = type(pattern)
    where = f"pattern {cls.__module__}.{cls.__qualname__}"
    if not isinstance(pattern.id, str) or not _ID_RE.match(pattern.id):
        raise PatternDeclarationError(
            f"{where}: id {pattern.id!r} must be a lower-case slug like 'feed-importer'"
        )
    if not pattern.title:
        raise PatternDeclarationError(f"{where}: title is empty")
    settings = getattr(cls, "Settings", NoSettings)
    if not (isinstance(settings, type) and issubclass(settings, BaseModel)):
        raise PatternDeclarationError(f"{where}: Settings must be a pydantic BaseModel subclass")
    version = getattr(pattern, "state_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PatternDeclarationError(f"{where}: state_version must be a whole number >= 1")
    needs = getattr(pattern, "requires_api", 1)
    if not isinstance(needs, int) or isinstance(needs, bool) or needs < 1:
        raise PatternDeclarationError(f"{where}: requires_api must be a whole number >= 1")
    if needs > API_VERSION:
        raise PatternDeclarationError(
            f"pattern {pattern.id!r} needs a newer Pattern Sync (plugin API {needs}; this one "
            f"has API {API_VERSION}): update Pattern Sync, or install an older version of the "
            "plugin"
        )
    for attr in ("default_interval", "timeout"):
        value = getattr(pattern, attr)
        if not isinstance(value, timedelta) or value <= timedelta(0):
            raise PatternDeclarationError(f"{where}: {attr} must be a positive timedelta")
    credential = getattr(pattern, "credential", None)
    if credential is not None:
        problem = check_credential(credential)
        if problem:
            raise PatternDeclarationError(f"{where}: {problem}")
        if pattern.scopes:
            raise PatternDeclarationError(
                f"{where}: declares both Google scopes and a credential for "
                f"{credential.service}; a charm has one account"
            )
    if cls.bg_updater is Pattern.bg_updater or not inspect.iscoroutinefunction(cls.bg_updater):
        raise PatternDeclarationError(f"{where}: bg_updater must be an 'async def' override")
    if pattern.export_formats and cls.export is Pattern.export:
        # Otherwise `trayapp export` would list formats that then fail with "nothing to export".
        raise PatternDeclarationError(
            f"{where}: offers export formats {pattern.export_formats!r} but does not override "
            "export()"
        )
    seen: set[str] = set()
    for spec in pattern.cells:
        if not isinstance(spec, CellSpec):
            raise PatternDeclarationError(f"{where}: cells must be CellSpec instances")
        if not _SLOT_RE.match(spec.name) or spec.name in seen:
            raise PatternDeclarationError(f"{where}: bad or duplicate cell slot {spec.name!r}")
        if spec.owner not in ("charm", "account"):
            raise PatternDeclarationError(f"{where}: slot {spec.name!r} has owner {spec.owner!r}")
        seen.add(spec.name)
    for name in pattern.collections:
        if not isinstance(name, str) or not _SLOT_RE.match(name) or name in seen:
            raise PatternDeclarationError(f"{where}: bad or duplicate collection {name!r}")
        seen.add(name)


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """A third-party pattern that could not be loaded; shown to the user, never raised."""

    entry_point: str  # "name = module:attr"
    distribution: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "entry_point": self.entry_point,
            "distribution": self.distribution,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class PatternMeta:
    """What the app knows of a pattern before (or without) importing its module.

    The built-ins are registered by such a descriptor (:data:`trayapp.patterns.BUILTIN_PATTERNS`)
    and their module is imported at the first :meth:`PatternRegistry.get`: when a charm of the
    pattern runs or is added or edited, when its settings are shown or an export is asked for.
    A profile of feed charms thus never imports the Gmail and Calendar importers and their
    stacks (issue 17). What start-up needs without the class is here: the id, the title, the
    Google scopes (the scope union of an account's charms), the credential (the services the
    accounts offer) and the run timeout (the scheduler's entries). A loaded pattern's descriptor
    is :meth:`of` it; a built-in's is checked against its class when the class is loaded.
    """

    id: str
    title: str
    target: str  # "package.module:ClassName"
    scopes: tuple[str, ...] = ()
    timeout: timedelta = timedelta(minutes=5)
    credential: CredentialSpec | None = None

    @classmethod
    def of(cls, pattern: Pattern[Any]) -> PatternMeta:
        kind = type(pattern)
        return cls(
            id=pattern.id,
            title=pattern.title,
            target=f"{kind.__module__}:{kind.__qualname__}",
            scopes=tuple(pattern.scopes),
            timeout=pattern.timeout,
            credential=pattern.credential,
        )


class PatternLoadError(NotFoundError):
    """A registered pattern whose module could not be imported (a damaged installation)."""


@dataclass(slots=True)
class PatternInfo:
    meta: PatternMeta
    source: str  # "built-in" or the distribution name of a plugin
    pattern: Pattern[Any] | None = None  # None until its module is imported
    failure: str | None = None  # why its module could not be imported, once it was tried


@dataclass
class PatternRegistry:
    """Every pattern the app can run, by id.

    A pattern registered by its :class:`PatternMeta` (the built-ins) is imported at the first
    :meth:`get`; :meth:`meta` and :meth:`metas` answer without importing anything. Iterating
    the registry yields the pattern objects, importing every one not imported yet.
    """

    _patterns: dict[str, PatternInfo] = field(default_factory=dict)
    problems: list[PluginProblem] = field(default_factory=list)

    @classmethod
    def with_patterns(
        cls,
        patterns: Iterable[type[Pattern[Any]] | PatternMeta],
        *,
        plugins: bool = True,
    ) -> PatternRegistry:
        """``patterns`` (the app's built-ins) plus whatever the installed plugins provide."""
        registry = cls()
        for pattern in patterns:
            if isinstance(pattern, PatternMeta):
                registry.register_meta(pattern)
            else:
                registry.register(pattern)
        if plugins:
            registry.load_entry_points()
        return registry

    def register(
        self, pattern: type[Pattern[Any]] | Pattern[Any], *, source: str = "built-in"
    ) -> Pattern[Any]:
        instance = pattern() if isinstance(pattern, type) else pattern
        if not isinstance(instance, Pattern):
            raise PatternDeclarationError(f"{pattern!r} is not a trayapp.api.Pattern")
        check_declaration(instance)
        self._check_new(instance.id)
        self._patterns[instance.id] = PatternInfo(PatternMeta.of(instance), source, instance)
        return instance

    def register_meta(self, meta: PatternMeta, *, source: str = "built-in") -> None:
        """Register a pattern by its descriptor; its module is imported when first needed."""
        if not _ID_RE.match(meta.id):
            raise PatternDeclarationError(
                f"pattern {meta.target}: id {meta.id!r} must be a lower-case slug like "
                "'feed-importer'"
            )
        module, _, attr = meta.target.partition(":")
        if not module or not attr:
            raise PatternDeclarationError(
                f"pattern {meta.id!r}: target {meta.target!r} must be 'package.module:Class'"
            )
        self._check_new(meta.id)
        self._patterns[meta.id] = PatternInfo(meta, source)

    def _check_new(self, pattern_id: str) -> None:
        existing = self._patterns.get(pattern_id)
        if existing is not None:
            raise PatternDeclarationError(
                f"pattern id {pattern_id!r} is already registered (by {existing.source})"
            )

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[PluginProblem]:
        """Register every plugin pattern; return (and remember) the ones that failed."""
        found: list[PluginProblem] = []
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            problem = self._load_one(ep)
            if problem is not None:
                log.warning(
                    "plugin pattern %s not loaded: %s", problem.entry_point, problem.message
                )
                found.append(problem)
        self.problems.extend(found)
        return found

    def _load_one(self, ep: EntryPoint) -> PluginProblem | None:
        dist = ep.dist.name if ep.dist is not None else None
        label = f"{ep.name} = {ep.value}"
        try:
            obj = ep.load()
        except ImportError as exc:
            if (exc.name or "").startswith("trayapp") or "from 'trayapp" in str(exc):
                # A name a newer plugin API has: say so rather than show an import error.
                return PluginProblem(
                    label,
                    dist,
                    f"it uses a part of the plugin API this Pattern Sync does not have ({exc}); "
                    f"this one has API {API_VERSION}: update Pattern Sync",
                )
            return PluginProblem(label, dist, f"import failed: {type(exc).__name__}: {exc}")
        except Exception as exc:  # a plugin may fail to import in any way at all
            return PluginProblem(label, dist, f"import failed: {type(exc).__name__}: {exc}")
        if not (isinstance(obj, type) and issubclass(obj, Pattern)):
            return PluginProblem(label, dist, "does not name a trayapp.api.Pattern subclass")
        try:
            self.register(obj, source=dist or ep.value)
        except PatternDeclarationError as exc:
            return PluginProblem(label, dist, str(exc))
        except Exception as exc:  # its constructor is plugin code too
            return PluginProblem(label, dist, f"could not be created: {type(exc).__name__}: {exc}")
        return None

    def _info(self, pattern_id: str) -> PatternInfo:
        info = self._patterns.get(pattern_id)
        if info is None:
            known = ", ".join(sorted(self._patterns)) or "none"
            raise NotFoundError(
                f"unknown pattern {pattern_id!r}; available patterns: {known} "
                "(see 'trayapp patterns list')"
            )
        return info

    def get(self, pattern_id: str) -> Pattern[Any]:
        """The pattern object (its module imported now if it was not yet).

        Raises :class:`NotFoundError` for an unknown id and :class:`PatternLoadError` (one)
        when the pattern's module cannot be imported; the latter is also kept in
        :attr:`problems`, as a broken plugin's is.
        """
        info = self._info(pattern_id)
        if info.pattern is None:
            info.pattern = self._import(info)
        return info.pattern

    def _import(self, info: PatternInfo) -> Pattern[Any]:
        meta = info.meta
        if info.failure is None:
            module_name, _, attr = meta.target.partition(":")
            try:
                module = importlib.import_module(module_name)
                obj: object = module
                for part in attr.split("."):
                    obj = getattr(obj, part)
                if not (isinstance(obj, type) and issubclass(obj, Pattern)):
                    raise PatternDeclarationError(
                        f"{meta.target} does not name a trayapp.api.Pattern subclass"
                    )
                instance: Pattern[Any] = obj()
                check_declaration(instance)
                actual = PatternMeta.of(instance)
                if actual != meta:
                    raise PatternDeclarationError(
                        f"{meta.target} does not match its registration ({actual} != {meta})"
                    )
            except Exception as exc:  # any failure of the import is reported the same way
                info.failure = f"import failed: {type(exc).__name__}: {exc}"
                problem = PluginProblem(f"{meta.id} = {meta.target}", info.source, info.failure)
                log.warning("pattern %s not loaded: %s", problem.entry_point, info.failure)
                self.problems.append(problem)
            else:
                return instance
        raise PatternLoadError(
            f"the {meta.title} pattern ({meta.id!r}) could not be loaded ({info.failure}); "
            "the installation is damaged: reinstall Pattern Sync"
            + ("" if info.source == "built-in" else f" or the plugin {info.source}")
        )

    def meta(self, pattern_id: str) -> PatternMeta:
        """The pattern's descriptor, without importing its module."""
        return self._info(pattern_id).meta

    def metas(self) -> Iterator[PatternMeta]:
        """Every pattern's descriptor, by id, without importing any module."""
        return iter(info.meta for _, info in sorted(self._patterns.items()))

    def is_loaded(self, pattern_id: str) -> bool:
        """Whether the pattern's module has been imported (its object exists)."""
        return self._info(pattern_id).pattern is not None

    def source(self, pattern_id: str) -> str:
        return self._info(pattern_id).source

    def __contains__(self, pattern_id: object) -> bool:
        return pattern_id in self._patterns

    def __iter__(self) -> Iterator[Pattern[Any]]:
        """Every pattern object, by id; one whose module cannot be imported is left out (it is
        in :attr:`problems`)."""
        found: list[Pattern[Any]] = []
        for pattern_id in sorted(self._patterns):
            try:
                found.append(self.get(pattern_id))
            except PatternLoadError:
                continue
        return iter(found)

    def __len__(self) -> int:
        return len(self._patterns)
