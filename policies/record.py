"""Plain value objects for the modules that must start quickly: `pysandbox run`'s warm start,
and `pyaudit FILE` (findings, the rule catalogue, the Dockerfile model). Here, beside the
policies' other shared vocabulary, because the runtime and the auditor both use it and the
auditor may import nothing of the runtime.

`dataclasses` imports `inspect` (and with it ast, dis and tokenize): about 9 ms of a start
that should take tens of milliseconds. A subclass lists its fields in `__slots__` and sets
them in a typed `__init__`; this base gives equality, a repr and a dict from those slots."""

from __future__ import annotations


class Record:
    __slots__: tuple[str, ...] = ()

    def values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.values() == self.values()

    def __hash__(self) -> int:
        return hash(self.values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"
