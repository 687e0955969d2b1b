"""The base of every generated message and struct class."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import Any, Self

from ._primitives import Reader, Writer, part_bytes


class Message:
    """A versioned Kafka message or struct. Subclasses are generated; fields are ``__slots__``.

    ``read``/``write`` are generated per class. Instances compare by field values. Not
    task-safe to mutate while another task encodes it.
    """

    __slots__: tuple[str, ...] = ()
    VALID_VERSIONS: tuple[int, int] = (0, 0)
    FIRST_FLEXIBLE_VERSION: int | None = None

    @classmethod
    def read(cls, r: Reader, version: int) -> Self:
        raise NotImplementedError

    def write(self, w: Writer, version: int) -> None:
        raise NotImplementedError

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview, version: int) -> Self:
        """Decode one message body; trailing bytes are ignored, as Kafka does."""
        return cls.read(Reader(buf), version)

    def encode(self, version: int) -> list[Any]:
        """Encode as parts: bytes, and records values kept as parts of their own."""
        w = Writer()
        self.write(w, version)
        return w.finish()

    def to_bytes(self, version: int) -> bytes:
        return b"".join(part_bytes(p) for p in self.encode(version))

    @classmethod
    def is_flexible(cls, version: int) -> bool:
        first = cls.FIRST_FLEXIBLE_VERSION
        return first is not None and version >= first

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, n), getattr(other, n)) for n in self.__slots__)

    # Mutable and compared by value: not hashable, like a list.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__qualname__}({fields})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, memoryview) or isinstance(b, memoryview):
        return a is not None and b is not None and bytes(a) == bytes(b)
    return bool(a == b)


class LazyClassMap(Mapping[int, Any]):
    """API key -> generated message class, importing the class's module the first time the
    key is looked up: a broker or client starts without importing the modules of the APIs
    it never meets. Read-only; safe to share (imports take Python's import lock).
    """

    __slots__ = ("_loaded", "_modules", "_names", "_package")

    def __init__(self, package: str, modules: Mapping[str, str], names: Mapping[int, str]):
        self._package = package
        self._modules = modules  # class name -> module name inside the package
        self._names = names  # api key -> class name
        self._loaded: dict[int, Any] = {}

    def __getitem__(self, key: int) -> Any:
        try:
            return self._loaded[key]
        except KeyError:
            pass
        name = self._names[key]  # KeyError for an unknown key, as a dict raises
        cls = getattr(import_module(f".{self._modules[name]}", self._package), name)
        self._loaded[key] = cls
        return cls

    def get(self, key: int, default: Any = None) -> Any:
        cls = self._loaded.get(key)
        if cls is not None:
            return cls
        return self[key] if key in self._names else default

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def __iter__(self) -> Iterator[int]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)
