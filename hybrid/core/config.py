"""Declarative schemas for TOML case/spec files: validation, overrides, reference docs.

A schema is a tree of four node kinds:

* :class:`Option` -- one leaf key (a typed value with optional default, range, choices);
* :class:`Table` -- a TOML table with a fixed set of known keys;
* :class:`Tagged` -- a table whose keys depend on the value of one tag key
  (e.g. ``[initial] kind = ...`` or ``[terms.elastic] provider = ...``);
* :class:`MapOf` -- a table of user-chosen names, each validated by the same schema
  (e.g. ``[terms.<name>]``).

:func:`validate` checks a parsed document against a schema, fills in defaults and
normalises types; every problem raises :class:`ConfigError`, whose message names the
file, the full dotted key and what is allowed. :func:`parse_override` and
:func:`apply_overrides` implement ``--set KEY=VALUE``; :func:`dumps_toml` writes a
resolved document back; :func:`describe` renders a schema as a Markdown reference.

An option whose default is ``None`` is optional with no value: when absent it is filled
in as ``None``, and :func:`dumps_toml` leaves ``None`` values out (TOML has no null),
so a resolved document survives a write/read/validate round trip.
"""

from __future__ import annotations

import copy
import difflib
import logging
import math
import numbers
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, get_args

import tomli_w

log = logging.getLogger(__name__)

__all__ = [
    "REQUIRED",
    "ConfigError",
    "Document",
    "MapOf",
    "Node",
    "Option",
    "OptionType",
    "Table",
    "Tagged",
    "apply_overrides",
    "describe",
    "dumps_toml",
    "get_path",
    "load_toml",
    "parse_override",
    "read_document",
    "validate",
]


class ConfigError(ValueError):
    """An error in a case/spec file or in an override.

    ``str()`` reads like ``"cases/atg.toml: key 'time.dt': must be > 0, got -0.001"``;
    the file and key parts are left out when unknown.

    Attributes:
        message: What is wrong and what is allowed.
        key: Full dotted key of the offending value ("" for the whole document).
        file: Name of the file the value came from, if known.
    """

    def __init__(self, message: str, key: str = "", file: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.file = file

    def __str__(self) -> str:
        parts = [self.file] if self.file else []
        if self.key:
            parts.append(f"key '{self.key}'")
        parts.append(self.message)
        return ": ".join(parts)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str, str | None]]:
        return (type(self), (self.message, self.key, self.file))


class _Required:
    """Type of the :data:`REQUIRED` sentinel (a single instance, kept by pickling)."""

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""Sentinel default meaning "this key must be given"."""

OptionType = Literal[
    "float",
    "int",
    "str",
    "bool",
    "list[float]",
    "list[int]",
    "list[str]",
    "list[bool]",
    "any",
]
"""Allowed values of :attr:`Option.type`."""

_OPTION_TYPES: Final = frozenset(get_args(OptionType))
_NUMERIC: Final = frozenset({"float", "int"})


@dataclass(frozen=True)
class Option:
    """One leaf key.

    ``int`` values are accepted where ``float`` is declared (and converted); ``bool`` is
    never accepted as a number. ``min``/``max``/``choices`` apply to each element of a list.
    A default of ``None`` makes the key optional with no value. Floats are never ``nan`` and must be
    finite unless ``finite`` is false (then ``±inf`` pass where the bounds allow them).

    Attributes:
        type: Declared type; ``"any"`` accepts anything unchecked.
        default: Value used when the key is absent, or :data:`REQUIRED`.
        doc: One-line description, with units.
        choices: Allowed values (for lists: allowed elements).
        min: Lower bound for numbers.
        max: Upper bound for numbers.
        min_exclusive: Whether ``min`` itself is excluded.
        max_exclusive: Whether ``max`` itself is excluded.
        length: Exact number of elements for list types.
        finite: Whether float values must be finite (``nan`` is refused either way).
        pattern: Regular expression a ``str`` value must match in full.
        pattern_doc: What ``pattern`` means, in words (for messages and docs).
    """

    type: OptionType
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    length: int | None = None
    finite: bool = True
    pattern: str | None = None
    pattern_doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in _OPTION_TYPES:
            raise ValueError(f"Option.type must be one of {sorted(_OPTION_TYPES)}, got {self.type!r}")
        if (self.min is not None or self.max is not None) and _element_type(self.type) not in _NUMERIC:
            raise ValueError(f"Option.min/max need a numeric type, not {self.type!r}")
        if self.length is not None and not self.type.startswith("list["):
            raise ValueError(f"Option.length needs a list type, not {self.type!r}")
        if self.pattern is not None and _element_type(self.type) != "str":
            raise ValueError(f"Option.pattern needs a str type, not {self.type!r}")
        if self.default is not REQUIRED and self.default is not None:
            try:
                _check_option(self.default, self, "default")
            except ConfigError as err:
                raise ValueError(f"invalid Option default: {err}") from None

    @property
    def required(self) -> bool:
        """Whether the key must be given."""
        return self.default is REQUIRED


@dataclass(frozen=True)
class Table:
    """A TOML table with known keys.

    Attributes:
        entries: Schema of each known key, in documentation order.
        doc: One-line description.
        exclusive: Groups of keys of which at most one may be given.
        require_one: Groups of keys of which exactly one must be given.
        open: If true, unknown keys are kept as they are instead of being an error.

    A key counts as "given" for ``exclusive``/``require_one`` only when present in the
    input with a value other than ``None`` (defaults do not count). An override
    (:func:`apply_overrides` with the schema) of one key of such a group replaces the other
    keys of the group that the document holds.
    """

    entries: Mapping[str, Node] = field(default_factory=dict)
    doc: str = ""
    exclusive: tuple[tuple[str, ...], ...] = ()
    require_one: tuple[tuple[str, ...], ...] = ()
    open: bool = False

    def __post_init__(self) -> None:
        for group in (*self.exclusive, *self.require_one):
            unknown = [k for k in group if k not in self.entries]
            if unknown:
                raise ValueError(f"Table group {group} names unknown keys {unknown}")


@dataclass(frozen=True)
class Tagged:
    """A table whose schema depends on the value of one key.

    Attributes:
        tag: Name of the selecting key, e.g. ``"kind"`` or ``"provider"``.
        variants: Tag value -> schema of the remaining keys.
        default: Tag value used when the tag is absent (``None``: the tag is required).
        doc: One-line description.
    """

    tag: str
    variants: Mapping[str, Table]
    default: str | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.default is not None and self.default not in self.variants:
            raise ValueError(f"Tagged default {self.default!r} is not a variant")
        for name, variant in self.variants.items():
            if self.tag in variant.entries:
                raise ValueError(f"Tagged variant {name!r} redefines the tag key {self.tag!r}")


@dataclass(frozen=True)
class MapOf:
    """A table of user-chosen names, each validated by the same schema.

    Attributes:
        value: Schema of each entry.
        keys: Allowed names (``None``: any name).
        doc: One-line description.
    """

    value: Node
    keys: tuple[str, ...] | None = None
    doc: str = ""


Node: TypeAlias = Option | Table | Tagged | MapOf
"""Any schema node."""


# --------------------------------------------------------------------------- validation


def validate(data: Mapping[str, Any], schema: Table, *, file: str | None = None, prefix: str = "") -> dict[str, Any]:
    """Validate a parsed document against a schema.

    Args:
        data: Parsed TOML document (or a sub-table of one).
        schema: Schema of ``data``.
        file: File name used in error messages.
        prefix: Dotted key of ``data`` within its document, used in error messages.

    Returns:
        A new dict: keys in schema order (extra keys of open tables last), defaults
        filled in (a missing sub-table whose entries all have defaults is filled with
        them), ints converted to float where float is declared, lists as lists.

    Raises:
        ConfigError: For the first problem found (unknown or missing key, wrong type,
            value out of range or not among the choices, exclusive/require_one
            violation), naming the file, the dotted key and what is allowed.
    """
    try:
        return _check_table(data, schema, prefix)
    except ConfigError as err:
        if err.file is None:
            err.file = file
        raise


def _check_node(value: Any, node: Node, path: str) -> Any:
    """Validate ``value`` (present in the input) against any schema node."""
    if isinstance(node, Option):
        return _check_option(value, node, path)
    if isinstance(node, Table):
        return _check_table(value, node, path)
    if isinstance(node, Tagged):
        return _check_tagged(value, node, path)
    return _check_map(value, node, path)


def _missing(node: Node, path: str, when: str) -> Any:
    """Return the filled-in value of an absent key, or raise if it is required."""
    if not _has_default(node):
        raise ConfigError(f"missing required {_needs(node)}{when}", path)
    if isinstance(node, Option):
        return None if node.default is None else _check_option(node.default, node, path)
    return _check_node({}, node, path)


def _needs(node: Node) -> str:
    """What an absent required node is, e.g. ``"table (needs 'dt'; one of 'steps', 'end')"``."""
    if isinstance(node, Option):
        return "key"
    if isinstance(node, Tagged):
        if node.default is not None:
            return _needs(node.variants[node.default])
        return f"table (needs '{node.tag}', one of {_quoted(node.variants)})"
    if isinstance(node, MapOf):
        return "table"
    keys = [k for k, n in node.entries.items() if not _has_default(n)]
    needs = [_quoted(keys)] if keys else []
    needs += [f"one of {_quoted(group)}" for group in node.require_one]
    return f"table (needs {'; '.join(needs)})"


def _has_default(node: Node) -> bool:
    """Whether an absent ``node`` can be filled in entirely from defaults."""
    if isinstance(node, Option):
        return not node.required
    if isinstance(node, Table):
        return not node.require_one and all(_has_default(n) for n in node.entries.values())
    if isinstance(node, Tagged):
        return node.default is not None and _has_default(node.variants[node.default])
    return True  # MapOf: an empty map


def _check_table(data: Any, table: Table, path: str, *, when: str = "", tag: str | None = None) -> dict[str, Any]:
    """Validate a table. ``tag`` is an extra allowed key (already checked by the caller)."""
    mapping = _expect_mapping(data, path)
    allowed = ([tag] if tag else []) + list(table.entries)
    extra: dict[str, Any] = {}
    for key, value in mapping.items():
        if key in table.entries or key == tag:
            continue
        if not table.open:
            raise _unknown_key(str(key), allowed, _join(path, str(key)), when)
        extra[key] = copy.deepcopy(value)

    given = {k for k, v in mapping.items() if v is not None}
    for group in table.exclusive:
        present = [k for k in group if k in given]
        if len(present) > 1:
            raise ConfigError(
                f"at most one of {_quoted(_join(path, k) for k in group)} may be given, "
                f"got {_quoted(_join(path, k) for k in present)}",
                path,
            )
    for group in table.require_one:
        present = [k for k in group if k in given]
        if len(present) != 1:
            got = _quoted(_join(path, k) for k in present) if present else "none"
            raise ConfigError(
                f"exactly one of {_quoted(_join(path, k) for k in group)} must be given{when}, got {got}",
                path,
            )

    result: dict[str, Any] = {}
    for key, node in table.entries.items():
        sub = _join(path, key)
        result[key] = _check_node(mapping[key], node, sub) if key in mapping else _missing(node, sub, when)
    result.update(extra)
    return result


def _check_tagged(data: Any, node: Tagged, path: str) -> dict[str, Any]:
    """Validate a tagged table: pick the variant by the tag, then check the rest."""
    mapping = _expect_mapping(data, path)
    tag_path = _join(path, node.tag)
    if node.tag in mapping:
        name = mapping[node.tag]
        if not isinstance(name, str):
            raise ConfigError(f"expected str, got {_show(name)}", tag_path)
    elif node.default is not None:
        name = node.default
    else:
        raise ConfigError(f"missing required key (one of {_quoted(node.variants)})", tag_path)
    if name not in node.variants:
        raise _not_a_choice(name, tuple(node.variants), tag_path)
    when = f" (for {node.tag} = '{name}')"
    rest = _check_table(mapping, node.variants[name], path, when=when, tag=node.tag)
    return {node.tag: name, **rest}


def _check_map(data: Any, node: MapOf, path: str) -> dict[str, Any]:
    """Validate a table of user-chosen names."""
    mapping = _expect_mapping(data, path)
    result: dict[str, Any] = {}
    for key, value in mapping.items():
        sub = _join(path, str(key))
        if node.keys is not None and key not in node.keys:
            raise _unknown_key(str(key), list(node.keys), sub, "")
        result[str(key)] = _check_node(value, node.value, sub)
    return result


def _check_option(value: Any, opt: Option, path: str) -> Any:
    """Validate and normalise one leaf value."""
    if value is None and opt.default is None:
        return None
    if opt.type == "any":
        return copy.deepcopy(value)
    if not opt.type.startswith("list["):
        return _check_scalar(value, opt.type, opt, path)
    items = value
    if not isinstance(items, (list, tuple)):
        tolist = getattr(value, "tolist", None)  # numpy arrays
        items = tolist() if callable(tolist) else None
        if not isinstance(items, list):
            raise ConfigError(f"expected {opt.type} (an array), got {_show(value)}", path)
    if opt.length is not None and len(items) != opt.length:
        raise ConfigError(
            f"must have exactly {opt.length} elements, got {len(items)}: {_show(value)}",
            path,
        )
    elem = _element_type(opt.type)
    return [_check_scalar(item, elem, opt, f"{path}[{i}]") for i, item in enumerate(items)]


def _check_scalar(value: Any, type_name: str, opt: Option, path: str) -> Any:
    """Check the type, range and choices of one scalar (or list element)."""
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"expected float, got {_show(value)}", path)
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"is too large for a float: {_show(value)}", path) from None
        if math.isnan(value) or (opt.finite and math.isinf(value)):
            allowed = f" {_range_text(opt)}" if opt.min is not None or opt.max is not None else ""
            raise ConfigError(f"must be a finite number{allowed}, got {value!r}", path)
    elif type_name == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"expected int, got {_show(value)}", path)
        value = int(value)
    elif type_name == "str":
        if not isinstance(value, str):
            raise ConfigError(f"expected str, got {_show(value)}", path)
        if opt.pattern is not None and re.fullmatch(opt.pattern, value) is None:
            raise ConfigError(f"must be {opt.pattern_doc or 'a match of ' + repr(opt.pattern)}, got {value!r}", path)
    elif not isinstance(value, bool):
        raise ConfigError(f"expected bool (true or false), got {_show(value)}", path)

    if type_name in _NUMERIC and not _in_range(value, opt):
        raise ConfigError(f"must be {_range_text(opt)}, got {value!r}", path)
    if opt.choices is not None and value not in opt.choices:
        raise _not_a_choice(value, opt.choices, path)
    return value


def _in_range(value: float, opt: Option) -> bool:
    """Whether a number satisfies the option's bounds (NaN never does if bounded)."""
    if opt.min is not None and not (value > opt.min if opt.min_exclusive else value >= opt.min):
        return False
    return opt.max is None or bool(value < opt.max if opt.max_exclusive else value <= opt.max)


def _range_text(opt: Option) -> str:
    """Human-readable allowed range, e.g. ``"> 0"`` or ``"in (0, 1]"``."""
    lo, hi = opt.min, opt.max
    if lo is not None and hi is not None:
        return f"in {'(' if opt.min_exclusive else '['}{_num(lo)}, {_num(hi)}{')' if opt.max_exclusive else ']'}"
    if lo is not None:
        return f"{'>' if opt.min_exclusive else '>='} {_num(lo)}"
    if hi is not None:
        return f"{'<' if opt.max_exclusive else '<='} {_num(hi)}"
    return ""


def _num(value: float) -> str:
    """A bound as text: ``repr`` (``0.5``, ``4``), large floats in exponent form (``1e+09``)."""
    return f"{value:.6g}" if isinstance(value, float) and abs(value) >= 1e6 else repr(value)


def _element_type(type_name: str) -> str:
    """``"list[float]"`` -> ``"float"``; scalar types unchanged."""
    return type_name[5:-1] if type_name.startswith("list[") else type_name


def _expect_mapping(data: Any, path: str) -> Mapping[Any, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a table, got {_show(data)}", path)
    return data


def _unknown_key(key: str, allowed: Sequence[str], path: str, when: str) -> ConfigError:
    hint = difflib.get_close_matches(key, allowed, n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    listing = _quoted(allowed) if allowed else "none"
    return ConfigError(f"unknown key{suggestion}; allowed keys{when}: {listing}", path)


def _not_a_choice(value: Any, choices: Sequence[Any], path: str) -> ConfigError:
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"must be one of {_quoted(choices)}, got {value!r}{hint}", path)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _quoted(items: Any) -> str:
    """``['a', 1]`` -> ``"'a', 1"`` (strings quoted, others by repr)."""
    return ", ".join(f"'{x}'" if isinstance(x, str) else repr(x) for x in items)


def _show(value: Any) -> str:
    """Type and (shortened) value for error messages, e.g. ``"str 'abc'"``."""
    names: dict[type, str] = {dict: "table", list: "array"}
    kind = "table" if isinstance(value, Mapping) else names.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"


# --------------------------------------------------------------------------- files and overrides


@dataclass(frozen=True)
class Document:
    """A case or spec document as read: its tables, and where it came from.

    Attributes:
        tables: the parsed TOML tables (a copy for in-memory tables).
        file: the file name as given, for messages (None for in-memory tables).
        folder: the file's folder, against which relative paths in it resolve (the working directory otherwise).
        stem: the file's stem, the default name of what it describes (``default_stem`` otherwise).
    """

    tables: dict[str, Any]
    file: str | None
    folder: Path
    stem: str


def read_document(source: str | os.PathLike[str] | Mapping[str, Any], default_stem: str) -> Document:
    """The one reader of case files, dataset specs and training specs: a TOML file, or tables already in memory.

    Overrides and validation follow with :func:`apply_overrides` and :func:`validate` and the document's schema.

    Raises:
        ConfigError: the file does not exist, cannot be read or is not TOML (:func:`load_toml`).
    """
    if isinstance(source, Mapping):
        return Document(dict(source), None, Path.cwd(), default_stem)
    path = Path(source)
    return Document(load_toml(path), os.fspath(source), path.resolve().parent, path.stem)


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file.

    Args:
        path: File to read.

    Returns:
        The parsed document.

    Raises:
        ConfigError: If the file does not exist, cannot be read or is not valid TOML (the message names
            the file and the line/column of the syntax error).
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read()
        # a UTF-8 byte order mark (written by some Windows editors) is not part of the document
        return tomllib.loads(raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", file=name) from None
    except IsADirectoryError:
        raise ConfigError("is a folder; give a TOML file", file=name) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"not a text TOML file ({err.reason})", file=name) from None
    except OSError as err:
        raise ConfigError(f"cannot read it ({err.strerror or err})", file=name) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"invalid TOML: {err}", file=name) from None


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``KEY=VALUE`` override, e.g. ``"time.dt=1e-3"`` -> ``("time.dt", 0.001)``.

    ``VALUE`` is parsed as a TOML value (numbers, booleans, quoted strings, arrays,
    inline tables); if it is not valid TOML it is taken as a bare string, so
    ``terms.elastic.provider=linear`` works after the shell has stripped quotes.

    Args:
        text: The override as given on the command line.

    Returns:
        The dotted key and the parsed value.

    Raises:
        ConfigError: If there is no ``=`` or the key (or one of its dotted parts) is empty.
    """
    key, sep, raw = text.partition("=")
    key = ".".join(part.strip() for part in key.split("."))
    if not sep or not key or "" in key.split("."):
        raise ConfigError(
            "malformed override: expected KEY=VALUE with a dotted KEY like 'time.dt'",
            text,
        )
    raw = raw.strip()
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        return key, raw
    return (key, parsed["v"]) if len(parsed) == 1 else (key, raw)


def apply_overrides(
    data: Mapping[str, Any],
    overrides: Mapping[str, Any] | Sequence[str],
    *,
    file: str | None = None,
    schema: Table | None = None,
) -> dict[str, Any]:
    """Return a deep copy of ``data`` with each dotted key set, creating missing tables.

    With ``schema``, an override replaces what it contradicts in ``data`` (each change is logged):

    * setting one key of a :class:`Table` group (``exclusive``/``require_one``, e.g.
      ``time.steps`` and ``time.end``) removes the other keys of that group;
    * setting the tag of a :class:`Tagged` table to another variant (e.g. ``initial.kind``)
      removes the keys the new variant does not accept.

    Keys set by earlier overrides of the same call are never removed, so contradictory
    overrides still fail validation.

    Args:
        data: Parsed document.
        overrides: ``{"time.dt": 1e-3}`` or ``["time.dt=1e-3", ...]`` (parsed with
            :func:`parse_override`); applied in order.
        file: File name used in error messages.
        schema: Schema of the document, to find the groups and tags an override affects.

    Returns:
        The new document (the input is not modified).

    Raises:
        ConfigError: For a malformed override, or one that sets a key inside a value
            that is not a table.
    """
    result: dict[str, Any] = copy.deepcopy(dict(data))
    try:
        if isinstance(overrides, str):
            overrides = [overrides]
        items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
        done: set[str] = set()
        for dotted, value in items:
            parts = dotted.split(".")
            if not all(parts):
                raise ConfigError("malformed key: empty part in dotted key", dotted)
            node = result
            for depth, part in enumerate(parts[:-1]):
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    parent = ".".join(parts[: depth + 1])
                    raise ConfigError(
                        f"cannot set '{dotted}': '{parent}' is {_show(child)}, not a table",
                        dotted,
                    )
                node = child
            if schema is not None:
                _make_room(node, parts, value, _node_at(schema, result, parts[:-1]), done)
            node[parts[-1]] = copy.deepcopy(value)
            done.add(dotted)
    except ConfigError as err:
        if err.file is None:
            err.file = file
        raise
    return result


def _node_at(schema: Table, data: Mapping[str, Any], parts: Sequence[str]) -> Node | None:
    """The schema node of the table at dotted ``parts`` of ``data`` (``None`` if the schema does not know it)."""
    node: Node = schema
    here: Any = data
    for part in parts:
        if isinstance(node, Tagged):
            variant = _variant(node, here)
            if variant is None:
                return None
            node = variant
        if isinstance(node, Table) and part in node.entries:
            node = node.entries[part]
        elif isinstance(node, MapOf) and (node.keys is None or part in node.keys):
            node = node.value
        else:
            return None
        here = here.get(part, {}) if isinstance(here, Mapping) else {}
    return node


def _variant(node: Tagged, table: Any) -> Table | None:
    """The variant of a tagged table selected by its tag value (or the default), or ``None``."""
    name = table.get(node.tag, node.default) if isinstance(table, Mapping) else node.default
    return node.variants.get(name) if isinstance(name, str) else None


def _make_room(table: dict[str, Any], parts: Sequence[str], value: Any, node: Node | None, done: set[str]) -> None:
    """Remove from ``table`` the keys that setting ``parts[-1]`` = ``value`` replaces (see :func:`apply_overrides`)."""
    key, prefix = parts[-1], ".".join(parts[:-1])
    dotted = _join(prefix, key)
    if isinstance(node, Tagged) and key == node.tag:
        old, new = _variant(node, table), node.variants.get(value) if isinstance(value, str) else None
        if new is None or new is old or new.open:
            return
        gone = [k for k in table if k != node.tag and k not in new.entries and _join(prefix, k) not in done]
        for k in gone:
            del table[k]
        if gone:
            log.info("%s = %r does not take %s; dropped", dotted, value, _quoted(_join(prefix, k) for k in gone))
        return
    if isinstance(node, Tagged):
        node = _variant(node, table)
    if not isinstance(node, Table):
        return
    for group in (*node.exclusive, *node.require_one):
        if key not in group:
            continue
        for other in group:
            if other != key and other in table and _join(prefix, other) not in done:
                log.info("%s replaces %s = %r", dotted, _join(prefix, other), table[other])
                del table[other]


_NO_DEFAULT: Final = object()


def get_path(data: Mapping[str, Any], dotted: str, default: Any = _NO_DEFAULT) -> Any:
    """Look up a dotted key, e.g. ``get_path(cfg, "time.dt")``.

    Args:
        data: Nested mappings.
        dotted: Dotted key.
        default: Returned when the key is absent; if not given, absence raises.

    Returns:
        The value at ``dotted``.

    Raises:
        KeyError: If the key is absent (or crosses a non-table value) and no default is given.
    """
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _NO_DEFAULT:
                raise KeyError(dotted)
            return default
        node = node[part]
    return node


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Serialise a document as TOML.

    numpy scalars and arrays (anything with a ``tolist()`` method) become Python values,
    tuples become arrays, path-like objects become strings and ``None`` values in tables
    are left out (TOML has no null).

    Args:
        data: Document to write.

    Returns:
        TOML text that :mod:`tomllib` reads back as ``data`` (modulo the conversions above).
    """
    return tomli_w.dumps(_to_plain(data))


def _to_plain(value: Any) -> Any:
    """Convert a value to what :mod:`tomli_w` accepts."""
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value) in (bool, int, float, str):
        return value
    tolist = getattr(value, "tolist", None)
    return _to_plain(tolist()) if callable(tolist) else value


# --------------------------------------------------------------------------- reference docs


def describe(schema: Table, *, prefix: str = "") -> str:
    """Render a schema as a Markdown reference table.

    One row per key with its type, default, allowed values and doc; keys of
    :class:`Tagged` variants are listed per tag value, entries of :class:`MapOf` under
    ``<name>``. Group constraints and open tables are listed as notes below the table.

    Args:
        schema: Schema to describe.
        prefix: Dotted key of the schema's root in the document.

    Returns:
        Markdown text.
    """
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    _describe_node(schema, prefix, "", rows, notes)
    lines = [
        "| Key | Type | Default | Allowed | Description |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def _describe_node(node: Node, path: str, when: str, rows: list[tuple[str, ...]], notes: list[str]) -> None:
    key = f"`{path}`{when}"
    if isinstance(node, Option):
        limits = [_range_text(node)] if node.min is not None or node.max is not None else []
        if node.choices is not None:
            limits.append("one of " + ", ".join(_literal(c) for c in node.choices))
        if node.length is not None:
            limits.append(f"{node.length} elements")
        if node.pattern is not None:
            limits.append(node.pattern_doc or f"matches `{node.pattern}`")
        default = node.default
        if default is not REQUIRED and default is not None:
            default = _check_option(default, node, path)  # e.g. 1 -> 1.0 for floats
        rows.append((key, node.type, _default_text(default), "; ".join(limits), node.doc))
    elif isinstance(node, Table):
        if path:
            rows.append((key, "table", "", "", node.doc))
        _table_notes(node, path, when, notes)
        for name, child in node.entries.items():
            _describe_node(child, _join(path, name), when, rows, notes)
    elif isinstance(node, Tagged):
        rows.append((key, "table", "", "", node.doc))
        default = REQUIRED if node.default is None else node.default
        allowed = "one of " + ", ".join(_literal(v) for v in node.variants)
        rows.append(
            (
                f"`{_join(path, node.tag)}`{when}",
                "str",
                _default_text(default),
                allowed,
                "selects the variant",
            )
        )
        for name, variant in node.variants.items():
            sub_when = f"{when} ({node.tag} = {_literal(name)})"
            if variant.doc:
                rows.append((f"`{path}`{sub_when}", "", "", "", variant.doc))
            _table_notes(variant, path, sub_when, notes)
            for entry, child in variant.entries.items():
                _describe_node(child, _join(path, entry), sub_when, rows, notes)
    else:
        allowed = "names: " + ", ".join(node.keys) if node.keys is not None else "any names"
        rows.append((key, "table of named entries", "", allowed, node.doc))
        _describe_node(node.value, _join(path, "<name>"), when, rows, notes)


def _table_notes(table: Table, path: str, when: str, notes: list[str]) -> None:
    where = f"`{path}`{when}" if path else f"top level{when}"
    for group in table.exclusive:
        notes.append(f"{where}: at most one of {', '.join(f'`{k}`' for k in group)}")
    for group in table.require_one:
        notes.append(f"{where}: exactly one of {', '.join(f'`{k}`' for k in group)}")
    if table.open:
        notes.append(f"{where}: other keys are accepted as they are")


def _default_text(default: Any) -> str:
    if default is REQUIRED:
        return "*required*"
    return "*unset*" if default is None else _literal(default)


def _literal(value: Any) -> str:
    """A value as a one-line TOML literal, for docs."""
    value = _to_plain(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_literal(v)}" for k, v in value.items()) + "}"
    return tomli_w.dumps({"v": value})[4:].strip()


def drop_none(d: Any) -> Any:
    """``d`` with every ``None`` value of its (nested) dicts removed: unset options before writing TOML."""
    if isinstance(d, dict):
        return {k: drop_none(v) for k, v in d.items() if v is not None}
    return d
