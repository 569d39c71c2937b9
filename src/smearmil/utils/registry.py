"""One registry per kind of thing, so that a config or the command line names a component by string.

An entry may declare its hyper-parameters as a pydantic model (a ``Params`` attribute, or
``register(name, params=...)``); :class:`Component` then validates ``{name: ..., **params}`` against it.

The shipped entries are *declared* in light modules (``declare(name, module, params)``): their names and
parameters are known, and configs validated, without importing torch or scikit-learn; the module that
defines an entry is imported the first time the entry itself is needed.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterator
from difflib import get_close_matches
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator, model_validator

T = TypeVar("T")
log = logging.getLogger(__name__)


class NoParams(BaseModel):
    """The hyper-parameters of an entry that has none."""

    model_config = ConfigDict(extra="forbid")


class Registry(Generic[T]):
    """Named entries of one kind (``register``, ``get``, ``names``); unknown names list the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._params: dict[str, type[BaseModel]] = {}
        self._modules: dict[str, str] = {}  # declared, not yet imported: name -> the module that defines it
        self._info: dict[str, dict[str, Any]] = {}

    def declare(self, name: str, module: str, params: type[BaseModel] | None = None, **info: Any) -> None:
        """Make ``name`` known before ``module`` (which registers it) is imported; ``info`` holds what a
        config needs to know of the entry without building it."""
        if name in self._entries or name in self._modules:
            raise ValueError(f"{self.kind} {name!r} is declared twice")
        self._modules[name] = module
        self._params[name] = params or NoParams
        self._info[name] = info

    def info(self, name: str) -> dict[str, Any]:
        """What the declaration of ``name`` says of it (empty for an entry registered without one)."""
        self.check(name)
        return self._info.get(name, {})

    def register(self, name: str, params: type[BaseModel] | None = None) -> Callable[[T], T]:
        """Decorator adding ``entry`` under ``name``; ``params`` overrides the entry's own ``Params``."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            declared = self._modules.pop(name, None) is not None
            self._entries[name] = entry
            if params is not None or not declared:
                self._params[name] = params or getattr(entry, "Params", None) or NoParams
            return entry

        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (for throw-away registrations, e.g. in tests)."""
        self._entries.pop(name, None)
        self._params.pop(name, None)
        self._modules.pop(name, None)
        self._info.pop(name, None)

    def check(self, name: str) -> None:
        """Raise, naming the closest known names, if ``name`` is neither registered nor declared."""
        if name not in self:
            close = get_close_matches(name, self.names(), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint} (choose one of {self.choices()})")

    def get(self, name: str) -> T:
        self.check(name)
        module = self._modules.get(name)
        if module is not None:
            importlib.import_module(module)
            if name not in self._entries:
                raise RuntimeError(f"{module} does not register the {self.kind} {name!r} it is declared in")
        return self._entries[name]

    def params(self, name: str) -> type[BaseModel]:
        """The pydantic model of the hyper-parameters of entry ``name`` (a declared entry's, unimported)."""
        self.check(name)
        return self._params[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the entry ``name`` (a class or a factory) with the given arguments."""
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted({*self._entries, *self._modules})

    def choices(self) -> str:
        return ", ".join(self.names())

    def items(self) -> list[tuple[str, T]]:
        """Every entry, built: this imports the modules of the declared ones."""
        return [(name, self.get(name)) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_modules(package: str, path: list[str]) -> None:
    """Import every module of ``package`` (its ``__path__``), so that each registers what it defines:
    a new layout is one new file, found without editing a list."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")


def registered_name(registry: Registry[Any], *also: str) -> AfterValidator:
    """A pydantic validator that accepts only names registered in ``registry`` (or one of ``also``)."""

    def check(name: str) -> str:
        if name not in registry and name not in also:
            allowed = [*also, *registry.names()]
            close = get_close_matches(name, allowed, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ValueError(f"unknown {registry.kind} {name!r}{hint} (choose one of {', '.join(allowed)})")
        return name

    return AfterValidator(check)


def checked_params(registry: Registry[Any], name: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` validated against the parameters entry ``name`` declares, every default filled in; an
    unknown key is an error that lists the declared ones."""
    schema = registry.params(name)
    try:
        params = schema.model_validate(given)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        declared = ", ".join(schema.model_fields) or "none"
        raise ValueError(f"{registry.kind} {name!r}: {problems} (its parameters: {declared})") from None
    return params.model_dump()


class Component(BaseModel):
    """``{name: <registered name>, **hyper-parameters}``; the parameters are those the entry declares.

    A bare string is read as ``{name: <string>}``. After validation the extra fields hold every
    parameter with its default filled in, so a dumped config is complete.
    """

    model_config = ConfigDict(extra="allow")
    registry: ClassVar[Registry[Any]]
    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        cls.registry.check(name)  # an unknown name lists the known ones (nothing is imported)
        return name

    @model_validator(mode="after")
    def _check_params(self) -> Component:
        self.__pydantic_extra__ = checked_params(self.registry, self.name, self.model_extra or {})
        return self

    @property
    def params(self) -> Any:
        """The validated hyper-parameters (an instance of the entry's ``Params``)."""
        return self.registry.params(self.name).model_validate(self.model_extra or {})
