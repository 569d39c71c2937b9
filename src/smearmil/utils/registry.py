"""One registry per kind of thing, so that a config or the command line names a component by string.

An entry may declare its hyper-parameters as a pydantic model (a ``Params`` attribute, or
``register(name, params=...)``); :class:`Component` then validates ``{name: ..., **params}`` against it.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterator
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

    def register(self, name: str, params: type[BaseModel] | None = None) -> Callable[[T], T]:
        """Decorator adding ``entry`` under ``name``; ``params`` overrides the entry's own ``Params``."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            self._params[name] = params or getattr(entry, "Params", None) or NoParams
            return entry

        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (for throw-away registrations, e.g. in tests)."""
        self._entries.pop(name, None)
        self._params.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {self.choices()}")
        return self._entries[name]

    def params(self, name: str) -> type[BaseModel]:
        """The pydantic model of the hyper-parameters of entry ``name``."""
        self.get(name)
        return self._params[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the entry ``name`` (a class or a factory) with the given arguments."""
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def choices(self) -> str:
        return ", ".join(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_modules(package: str, path: list[str]) -> None:
    """Import every module of ``package`` (its ``__path__``), so that each registers what it defines:
    a new pooling, SSL method, layout or baseline is one new file, found without editing a list."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")


def registered_name(registry: Registry[Any], *also: str) -> AfterValidator:
    """A pydantic validator that accepts only names registered in ``registry`` (or one of ``also``)."""

    def check(name: str) -> str:
        if name not in registry and name not in also:
            allowed = ", ".join([*also, *registry.names()])
            raise ValueError(f"unknown {registry.kind} {name!r}; choose one of {allowed}")
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
        cls.registry.get(name)  # an unknown name lists the known ones
        return name

    @model_validator(mode="after")
    def _check_params(self) -> Component:
        self.__pydantic_extra__ = checked_params(self.registry, self.name, self.model_extra or {})
        return self

    @property
    def params(self) -> Any:
        """The validated hyper-parameters (an instance of the entry's ``Params``)."""
        return self.registry.params(self.name).model_validate(self.model_extra or {})
