"""Composing SQL safely: values are bound, only validated names are formatted into a statement.

The rules every statement of the platform follows:

- **every value** (an entity, an email, a date, a LIMIT) is a bound parameter: ``?`` in a
  statement for ``Warehouse.query`` or ``Warehouse.read_frame`` (they translate it for PostgreSQL),
  or ``placeholders(n, warehouse.placeholder)`` on a DB-API cursor of ``Warehouse.connect``;
- **a name** (schema, table, column) is formatted in only through :func:`ident` or :func:`quoted`,
  which refuse anything but ``[A-Za-z_][A-Za-z0-9_]*`` in each dotted part: no quote, space,
  semicolon or comment marker can get through, so a name cannot inject;
- :func:`sql` formats only :class:`Fragment` instances into its template and raises ``TypeError``
  for anything else (a ``str``, an ``int``): a value cannot reach a statement by mistake, it has
  to be bound.

A ``Fragment`` is SQL text that is safe by construction: a validated name, a run of placeholders,
an integer literal, or a fixed piece of the code's own text (``Fragment("TRUE")``). It is a
``str``, so a finished statement goes straight to ``execute``; ``+`` or an f-string on it give a
plain ``str`` again, which ``sql`` refuses. Templates (and the separator of :func:`join`) are the
code's own literal text, never built from data.

Example::

    warehouse.read_frame(sql("SELECT {columns} FROM {table} WHERE entity = ? LIMIT ?",
                             columns=idents(["source_id", "rule"]), table=ident("ops", "quarantine")),
                         (entity, limit))
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

__all__ = ["Fragment", "ident", "idents", "integer", "join", "placeholders", "quoted", "sql"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MARKERS = ("?", "%s")  # qmark (DuckDB, and Warehouse.query on either engine) and psycopg2's format style


class Fragment(str):
    """SQL text that may be formatted into a statement (see the module docstring)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Fragment({str.__repr__(self)})"


def _checked(part: object) -> str:
    if not isinstance(part, str):
        raise TypeError(f"an SQL identifier must be a str, got {type(part).__name__}: {part!r}")
    if not _IDENTIFIER.fullmatch(part):
        raise ValueError(
            f"not a safe SQL identifier: {part!r} (ASCII letters, digits and _, not starting with a digit)"
        )
    return part


def ident(*parts: str) -> Fragment:
    """A name, dotted from its ``parts`` (``ident("ops", "quarantine")`` -> ``ops.quarantine``), unquoted.

    Unquoted, so it follows each engine's case rules exactly as a name written in the SQL would
    (PostgreSQL folds it to lower case); the validation is what makes it safe.
    """
    if not parts:
        raise ValueError("an SQL identifier needs at least one part")
    return Fragment(".".join(_checked(p) for p in parts))


def quoted(*parts: str) -> Fragment:
    """Like :func:`ident`, each part in double quotes: for reserved words (``"column"``) and where a
    statement has always quoted the name (case kept as written on PostgreSQL)."""
    if not parts:
        raise ValueError("an SQL identifier needs at least one part")
    return Fragment(".".join(f'"{_checked(p)}"' for p in parts))


def idents(names: Iterable[str]) -> Fragment:
    """Comma-separated names (a column list), each validated as by :func:`ident`."""
    if isinstance(names, str):
        raise TypeError(f"idents takes a collection of names, got the str {names!r}")
    found = [_checked(n) for n in names]
    if not found:
        raise ValueError("a list of SQL identifiers needs at least one name")
    return Fragment(", ".join(found))


def placeholders(n: int, marker: str = "?") -> Fragment:
    """``n`` bound-parameter markers, comma-separated (``?, ?, ?``); ``marker`` is ``?`` or ``%s``
    (``Warehouse.placeholder``, for statements run on a raw cursor)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"placeholders needs a count of at least 1, got {n!r}")
    if marker not in MARKERS:
        raise ValueError(f"a placeholder marker is one of {MARKERS}, got {marker!r}")
    return Fragment(", ".join([marker] * n))


def integer(n: int) -> Fragment:
    """An integer literal, for the structure of generated SQL (a bit mask, a bucket modulus).

    A value that comes from outside the code (a limit, a count a user chose) is bound instead.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"integer takes an int, got {type(n).__name__}: {n!r}")
    return Fragment(str(n))


def join(fragments: Iterable[Fragment], sep: str = ", ") -> Fragment:
    """``fragments`` joined by ``sep`` (code text such as ``" AND "``); every item must be a Fragment."""
    items = list(fragments)
    for item in items:
        if not isinstance(item, Fragment):
            raise TypeError(f"only Fragments can be joined into SQL, got {type(item).__name__}: {item!r}")
    return Fragment(sep.join(items))


def sql(template: str, **parts: Fragment) -> Fragment:
    """``template`` with each ``{name}`` replaced by the Fragment ``parts[name]``.

    Refuses (``TypeError``) a part that is not a Fragment, and (``ValueError``) a field with a
    conversion or format spec, a field with no part and a part with no field. ``{{`` and ``}}``
    are literal braces.
    """
    out: list[str] = []
    used: set[str] = set()
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"SQL template field {{{name}}} may not have a conversion or format spec")
        if name not in parts:
            raise ValueError(f"SQL template field {{{name}}} has no part (given: {', '.join(sorted(parts))})")
        part = parts[name]
        if not isinstance(part, Fragment):
            raise TypeError(
                f"SQL part {name!r} is a {type(part).__name__}, not a Fragment: bind values as "
                "parameters, pass names through ident()"
            )
        out.append(part)
        used.add(name)
    unused = sorted(set(parts) - used)
    if unused:
        raise ValueError(f"SQL parts not in the template: {', '.join(unused)}")
    return Fragment("".join(out))
