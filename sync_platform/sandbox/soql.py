"""The SOQL subset the sandbox's Salesforce dialect answers: parse, bind, plan, page.

Parsing is a lark LALR grammar. Binding resolves object and field names case-insensitively
against the schema and types the literals, failing with Salesforce's own error codes. Planning
picks an access path the store serves without generating every record (the stamp index, an id
range, id lookups, the fast count), so a 1,000,000-contact sandbox answers a cursor page in
milliseconds. Paging is keyset-based: a page resumes after the last row's sort key, never from
a live iterator, so writes between pages cannot break a cursor.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice, takewhile
from typing import Literal as Kind

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .formats import parse_datetime_ms
from .schema import BOOLEAN, DATETIME, ID, INT, REFERENCE, FieldSpec, ObjectSpec
from .store import DELETED, ObjectStore

GRAMMAR = r"""
start: _SELECT select_list _FROM name where? order? limit? offset?

select_list: _COUNT "(" ")"          -> count_all
           | field ("," field)*      -> fields

field: NAME ("." NAME)*
name: NAME

where: _WHERE or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr            -> negation
         | "(" or_expr ")"
         | comparison
comparison: field COMPARATOR value            -> compare
          | field _LIKE value                 -> like
          | field _IN "(" values ")"          -> in_list
          | field _NOT _IN "(" values ")"     -> not_in_list
values: value ("," value)*
value: STRING     -> string
     | DATETIME   -> datetime
     | DATE       -> date
     | NUMBER     -> number
     | _TRUE      -> true
     | _FALSE     -> false
     | _NULL      -> null

order: _ORDER _BY order_item ("," order_item)*
order_item: field DIRECTION? (_NULLS NULLS_AT)?
limit: _LIMIT INT
offset: _OFFSET INT

_SELECT: "select"i
_FROM: "from"i
_WHERE: "where"i
_AND: "and"i
_OR: "or"i
_NOT: "not"i
_LIKE: "like"i
_IN: "in"i
_TRUE: "true"i
_FALSE: "false"i
_NULL: "null"i
_COUNT: "count"i
_ORDER: "order"i
_BY: "by"i
_NULLS: "nulls"i
_LIMIT: "limit"i
_OFFSET: "offset"i
DIRECTION: "asc"i | "desc"i
NULLS_AT: "first"i | "last"i

COMPARATOR: "!=" | "<=" | ">=" | "=" | "<" | ">"
NAME: /[a-z_][a-z0-9_]*/i
STRING: /'(?:[^'\\]|\\.)*'/s
DATETIME.3: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})/i
DATE.2: /\d{4}-\d{2}-\d{2}/
NUMBER: /[+-]?\d+(\.\d+)?/
INT: /\d+/

%ignore /\s+/
"""

MAX_OFFSET = 2_000
EQUALITY_OPS = ("=", "!=", "IN", "NOT IN")
RANGE_OPS = ("=", "<", "<=", ">", ">=")
_ID_SHAPE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_PARSER = Lark(GRAMMAR, parser="lalr")


class SoqlError(Exception):
    """A query Salesforce would refuse, with its error code (MALFORMED_QUERY, INVALID_FIELD, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ------------------------------------------------------------------ parsed form
@dataclass(frozen=True)
class Name:
    text: str
    line: int
    column: int


@dataclass(frozen=True)
class Lit:
    """A literal as written: ``value`` is the raw text inside quotes, a number, epoch ms, a bool or None."""

    kind: Kind["string", "number", "datetime", "date", "boolean", "null"]
    value: object


@dataclass(frozen=True)
class Comparison:
    field: Name
    op: str
    value: Lit | tuple[Lit, ...]


@dataclass(frozen=True)
class Junction:
    op: Kind["AND", "OR"]
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Negation:
    item: Condition


Condition = Comparison | Junction | Negation


@dataclass(frozen=True)
class OrderItem:
    field: Name
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class ParsedQuery:
    text: str
    fields: tuple[Name, ...]  # empty for SELECT COUNT()
    obj: Name
    where: Condition | None
    order: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


@v_args(inline=True)
class _ToAst(Transformer):
    """Lark tree → the frozen dataclasses above (the parser never sees the schema)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def start(self, fields, obj, *clauses):
        parts = {kind: value for kind, value in clauses}
        return ParsedQuery(
            self.text,
            fields,
            obj,
            parts.get("where"),
            parts.get("order", ()),
            parts.get("limit"),
            parts.get("offset"),
        )

    def count_all(self):
        return ()

    def fields(self, *names):
        return names

    def field(self, *parts: Token) -> Name:
        return Name(".".join(parts), parts[0].line, parts[0].column)

    def name(self, token: Token) -> Name:
        return Name(str(token), token.line, token.column)

    def where(self, cond):
        return "where", cond

    def or_expr(self, *items):
        return Junction("OR", items)

    def and_expr(self, *items):
        return Junction("AND", items)

    def negation(self, item):
        return Negation(item)

    def compare(self, field, op: Token, value):
        return Comparison(field, str(op), value)

    def like(self, field, value):
        return Comparison(field, "LIKE", value)

    def in_list(self, field, values):
        return Comparison(field, "IN", values)

    def not_in_list(self, field, values):
        return Comparison(field, "NOT IN", values)

    def values(self, *items):
        return items

    def string(self, token: Token) -> Lit:
        return Lit("string", str(token)[1:-1])

    def datetime(self, token: Token) -> Lit:
        return Lit("datetime", parse_datetime_ms(str(token)))

    def date(self, token: Token) -> Lit:
        return Lit("date", parse_datetime_ms(str(token)))

    def number(self, token: Token) -> Lit:
        text = str(token)
        return Lit("number", float(text) if "." in text else int(text))

    def true(self):
        return Lit("boolean", True)

    def false(self):
        return Lit("boolean", False)

    def null(self):
        return Lit("null", None)

    def order(self, *items):
        return "order", items

    def order_item(self, field, *rest: Token):
        words = [str(t).upper() for t in rest]
        descending = "DESC" in words
        nulls_first = "FIRST" in words if ("FIRST" in words or "LAST" in words) else not descending
        return OrderItem(field, descending, nulls_first)

    def limit(self, token: Token):
        return "limit", int(token)

    def offset(self, token: Token):
        return "offset", int(token)


def located(text: str, line: int, column: int, detail: str) -> str:
    """Salesforce's error layout: the offending line, a caret, ``ERROR at Row:R:Column:C``, the detail."""
    lines = text.splitlines() or [""]
    source = lines[min(max(line, 1), len(lines)) - 1]
    return f"\n{source}\n{' ' * max(column - 1, 0)}^\nERROR at Row:{line}:Column:{column}\n{detail}"


def parse(text: str) -> ParsedQuery:
    """Parse a SOQL query; raises SoqlError(MALFORMED_QUERY) for anything outside the subset."""
    try:
        return _ToAst(text).transform(_PARSER.parse(text))
    except UnexpectedInput as exc:
        raise SoqlError("MALFORMED_QUERY", _syntax_message(text, exc)) from None
    except VisitError as exc:  # a literal that lexes but does not exist, such as 2024-13-45
        if not isinstance(exc.orig_exc, ValueError):
            raise
        raise SoqlError("MALFORMED_QUERY", f"\n{text}\nunparseable literal: {exc.orig_exc}") from None


def _syntax_message(text: str, exc: UnexpectedInput) -> str:
    if (isinstance(exc, UnexpectedToken) and exc.token.type == "$END") or isinstance(exc, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return located(text, len(lines), len(lines[-1]) + 1, "unexpected token: '<EOF>'")
    if isinstance(exc, UnexpectedToken):
        return located(text, exc.line, exc.column, f"unexpected token: '{exc.token}'")
    if isinstance(exc, UnexpectedCharacters):
        return located(text, exc.line, exc.column, f"unexpected token: '{exc.char}'")
    return located(text, getattr(exc, "line", 1), getattr(exc, "column", 1), "unexpected token")


# ------------------------------------------------------------------ bound form
@dataclass(frozen=True)
class Compare:
    """A comparison on a canonical field with a typed value (casefolded when compared caselessly)."""

    field: str
    op: str
    value: object  # a frozenset for IN / NOT IN, a compiled pattern for LIKE


@dataclass(frozen=True)
class AllOf:
    items: tuple[BoundCondition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[BoundCondition, ...]


@dataclass(frozen=True)
class Not:
    item: BoundCondition


BoundCondition = Compare | AllOf | AnyOf | Not


@dataclass(frozen=True)
class OrderKey:
    field: str
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class Query:
    """A query resolved against one object: canonical names, typed values, a compiled row test."""

    spec: ObjectSpec
    fields: tuple[str, ...]
    is_count: bool
    where: BoundCondition | None
    order: tuple[OrderKey, ...]
    limit: int | None
    offset: int
    matches: Callable[[dict], bool]


def compile_query(text: str, objects: Mapping[str, ObjectSpec]) -> Query:
    return bind(parse(text), objects)


def bind(parsed: ParsedQuery, objects: Mapping[str, ObjectSpec]) -> Query:
    return _Binder(parsed, objects).query()


def caseless(spec: FieldSpec) -> bool:
    """SOQL compares text case-insensitively; ids, booleans, numbers and datetimes exactly."""
    return spec.type not in (ID, REFERENCE, BOOLEAN, DATETIME, INT)


def _fold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


class _Binder:
    def __init__(self, parsed: ParsedQuery, objects: Mapping[str, ObjectSpec]) -> None:
        self.parsed = parsed
        self.spec = self._object(parsed.obj, objects)
        self.by_lower = {f.name.lower(): f for f in self.spec.fields}

    def query(self) -> Query:
        p = self.parsed
        fields = tuple(self._field(n).name for n in p.fields)
        seen: set[str] = set()
        for name, canonical in zip(p.fields, fields, strict=True):
            if canonical in seen:
                raise SoqlError("MALFORMED_QUERY", self._at(name, f"duplicate field selected: {canonical}"))
            seen.add(canonical)
        where = self._condition(p.where) if p.where is not None else None
        order = tuple(OrderKey(self._field(o.field).name, o.descending, o.nulls_first) for o in p.order)
        if p.offset is not None and p.offset > MAX_OFFSET:
            raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}")
        return Query(
            self.spec,
            fields,
            not p.fields,
            where,
            order,
            p.limit,
            p.offset or 0,
            compile_condition(where, self.spec),
        )

    def _at(self, name: Name, detail: str) -> str:
        return located(self.parsed.text, name.line, name.column, detail)

    def _object(self, name: Name, objects: Mapping[str, ObjectSpec]) -> ObjectSpec:
        for key, spec in objects.items():
            if key.lower() == name.text.lower():
                return spec
        raise SoqlError(
            "INVALID_TYPE",
            self._at(
                name,
                f"sObject type '{name.text}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name. Please reference your WSDL or "
                "the describe call for the appropriate names.",
            ),
        )

    def _field(self, name: Name) -> FieldSpec:
        if "." in name.text:
            relation = name.text.split(".")[0]
            raise SoqlError(
                "INVALID_FIELD",
                self._at(
                    name,
                    f"Didn't understand relationship '{relation}' in field path. The CRM sandbox does not "
                    "support relationship queries; select the reference id instead.",
                ),
            )
        spec = self.by_lower.get(name.text.lower())
        if spec is None:
            raise SoqlError(
                "INVALID_FIELD",
                self._at(
                    name,
                    f"No such column '{name.text}' on entity '{self.spec.name}'. If you are attempting to "
                    "use a custom field, be sure to append the '__c' after the custom field name. Please "
                    "reference your WSDL or the describe call for the appropriate names.",
                ),
            )
        return spec

    def _condition(self, cond: Condition) -> BoundCondition:
        if isinstance(cond, Junction):
            items = tuple(self._condition(c) for c in cond.items)
            return AllOf(items) if cond.op == "AND" else AnyOf(items)
        if isinstance(cond, Negation):
            return Not(self._condition(cond.item))
        spec = self._field(cond.field)
        if cond.op == "LIKE":
            if not caseless(spec):
                raise SoqlError(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    self._at(cond.field, f"invalid operator on {spec.type} field: LIKE"),
                )
            assert isinstance(cond.value, Lit)
            if cond.value.kind != "string":
                raise SoqlError("MALFORMED_QUERY", self._at(cond.field, "LIKE needs a quoted string"))
            return Compare(spec.name, "LIKE", like_pattern(str(cond.value.value)))
        if spec.type == BOOLEAN and cond.op not in EQUALITY_OPS:
            raise SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                self._at(cond.field, f"invalid operator on boolean field: {cond.op}"),
            )
        if isinstance(cond.value, tuple):
            values = frozenset(self._value(cond.field, spec, "=", v) for v in cond.value)
            return Compare(spec.name, cond.op, values)
        return Compare(spec.name, cond.op, self._value(cond.field, spec, cond.op, cond.value))

    def _value(self, where: Name, spec: FieldSpec, op: str, lit: Lit) -> object:
        if lit.kind == "null":
            if op not in ("=", "!="):
                raise SoqlError("MALFORMED_QUERY", self._at(where, f"invalid operator on null value: {op}"))
            return None
        expected, ok = _expected_kind(spec, lit)
        if not ok:
            quoting = "should" if expected == "string" else "should not"
            raise SoqlError(
                "MALFORMED_QUERY",
                self._at(
                    where,
                    f"value of filter criterion for field '{spec.name}' must be of type {expected} and "
                    f"{quoting} be enclosed in quotes",
                ),
            )
        if lit.kind != "string":
            return lit.value
        text = unescape(str(lit.value))
        if spec.type in (ID, REFERENCE):
            if not _ID_SHAPE.match(text):
                raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", self._at(where, f"invalid ID field: {text}"))
            return text if len(text) == 18 else text + "AAA"  # sandbox ids all end in AAA
        return text.casefold()


def _expected_kind(spec: FieldSpec, lit: Lit) -> tuple[str, bool]:
    if spec.type == DATETIME:
        return "dateTime", lit.kind in ("datetime", "date")
    if spec.type == BOOLEAN:
        return "boolean", lit.kind == "boolean"
    if spec.type == INT:
        return "number", lit.kind == "number"
    return "string", lit.kind == "string"


def unescape(raw: str) -> str:
    """The value of a quoted SOQL string (``\\_`` and ``\\%`` are legal only inside LIKE)."""
    out, chars = [], iter(raw)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        if nxt not in _ESCAPES:
            raise SoqlError(
                "MALFORMED_QUERY",
                f"Invalid string literal '{raw}'. Illegal character sequence '\\{nxt}' in string literal.",
            )
        out.append(_ESCAPES[nxt])
    return "".join(out)


def like_pattern(raw: str) -> re.Pattern[str]:
    """``%`` is any run, ``_`` one character, ``\\%``/``\\_`` themselves; matching ignores case."""
    parts, chars = [], iter(raw)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            if nxt in ("%", "_"):
                parts.append(re.escape(nxt))
            else:
                parts.append(re.escape(unescape("\\" + nxt)))
        elif ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def compile_condition(cond: BoundCondition | None, spec: ObjectSpec) -> Callable[[dict], bool]:
    """A closure testing one stored record (native names, epoch-ms datetimes)."""
    if cond is None:
        return lambda rec: True
    if isinstance(cond, AllOf | AnyOf):
        tests = [compile_condition(c, spec) for c in cond.items]
        combine = all if isinstance(cond, AllOf) else any
        return lambda rec: combine(t(rec) for t in tests)
    if isinstance(cond, Not):
        inner = compile_condition(cond.item, spec)
        return lambda rec: not inner(rec)
    return _compile_compare(cond, spec.by_name[cond.field])


def _compile_compare(cond: Compare, spec: FieldSpec) -> Callable[[dict], bool]:
    name, value = cond.field, cond.value
    get: Callable[[dict], object] = (
        (lambda rec: _fold(rec.get(name))) if caseless(spec) else (lambda rec: rec.get(name))
    )
    op = cond.op
    if op == "=":
        return lambda rec: get(rec) == value
    if op == "!=":
        return lambda rec: get(rec) != value
    if op == "IN":
        return lambda rec: get(rec) in value  # type: ignore[operator]
    if op == "NOT IN":
        return lambda rec: get(rec) not in value  # type: ignore[operator]
    if op == "LIKE":
        pattern: re.Pattern[str] = value  # type: ignore[assignment]
        return lambda rec: isinstance(v := rec.get(name), str) and pattern.fullmatch(v) is not None
    order_test: Callable[[object], bool] = {
        "<": lambda v: v < value,
        "<=": lambda v: v <= value,  # type: ignore[operator]
        ">": lambda v: v > value,
        ">=": lambda v: v >= value,  # type: ignore[operator]
    }[op]
    return lambda rec: (v := get(rec)) is not None and order_test(v)


# ------------------------------------------------------------------ planning
Path = Kind["stamp", "stamp_desc", "index", "ids", "sorted"]
Deleted = Kind["exclude", "include", "only"]


@dataclass(frozen=True)
class Plan:
    """How the store serves a query. Bounds are hints implied by the WHERE, which is still tested per row.

    ``path`` is ``stamp``/``stamp_desc``/``index`` when the store streams rows already in the query's
    order (keyset paging on (stamp, index) or index), ``ids`` for direct lookups and ``sorted`` for
    anything else (a scan kept to the top rows of each page). ``exact`` means the bounds and the
    deletion filter say everything the WHERE says, so counts need no scan.
    """

    path: Path
    deleted: Deleted
    min_stamp: int | None = None
    max_stamp: int | None = None
    min_index: int | None = None
    max_index: int | None = None
    ids: tuple[int, ...] | None = None
    exact: bool = False
    empty: bool = False


def conjuncts(cond: BoundCondition | None) -> list[BoundCondition]:
    if cond is None:
        return []
    if isinstance(cond, AllOf):
        return [c for item in cond.items for c in conjuncts(item)]
    return [cond]


def plan(query: Query, all_rows: bool) -> Plan:
    """Pick the access path; ``all_rows`` is queryAll (deleted rows visible)."""
    spec = query.spec
    lo_s: int | None = None
    hi_s: int | None = None
    lo_i: int | None = None
    hi_i: int | None = None
    ids: set[int] | None = None
    deleted: Deleted = "include" if all_rows else "exclude"
    exact, empty = True, False
    for c in conjuncts(query.where):
        if not isinstance(c, Compare):
            exact = False
        elif c.field == spec.system_stamp and isinstance(c.value, int) and c.op in RANGE_OPS:
            lo, hi = _range(c.op, c.value)
            lo_s = lo if lo_s is None or (lo is not None and lo > lo_s) else lo_s
            hi_s = hi if hi_s is None or (hi is not None and hi < hi_s) else hi_s
        elif c.field == spec.id_field and c.op in ("=", "IN") and c.value is not None:
            values = c.value if isinstance(c.value, frozenset) else {c.value}
            found = {i for v in values if isinstance(v, str) and (i := spec.parse_id(v)) is not None}
            ids = found if ids is None else ids & found
            exact = False
        elif (
            c.field == spec.id_field
            and c.op in RANGE_OPS[1:]
            and isinstance(c.value, str)
            and spec.parse_id(c.value) is not None
        ):
            lo, hi = _range(c.op, spec.parse_id(c.value))  # type: ignore[arg-type]
            lo_i = lo if lo_i is None or (lo is not None and lo > lo_i) else lo_i
            hi_i = hi if hi_i is None or (hi is not None and hi < hi_i) else hi_i
        elif c.field == "IsDeleted" and c.op == "=" and isinstance(c.value, bool):
            if not all_rows and c.value:
                empty = True
            deleted = "only" if all_rows and c.value else "exclude"
        else:
            exact = False
    if (
        (lo_s is not None and hi_s is not None and lo_s > hi_s)
        or (lo_i is not None and hi_i is not None and lo_i > hi_i)
        or ids == set()
    ):
        empty = True
    if lo_s is not None and (lo_i is not None or hi_i is not None):
        exact = False  # the fast counts handle a stamp range or an id range, not both
    return Plan(
        _path(query, ids, lo_s),
        deleted,
        lo_s,
        hi_s,
        lo_i,
        hi_i,
        tuple(sorted(ids)) if ids is not None else None,
        exact,
        empty,
    )


def _range(op: str, value: int) -> tuple[int | None, int | None]:
    """Inclusive bounds of ``x op value`` over integers (epoch ms or record index)."""
    return {
        "=": (value, value),
        ">=": (value, None),
        ">": (value + 1, None),
        "<=": (None, value),
        "<": (None, value - 1),
    }[op]


def _path(query: Query, ids: set[int] | None, min_stamp: int | None) -> Path:
    spec = query.spec
    keys = [(o.field, o.descending) for o in query.order]
    if spec.id_field in [k for k, _ in keys]:
        keys = keys[: [k for k, _ in keys].index(spec.id_field) + 1]  # the id is unique: later keys are moot
    if ids is not None:
        return "ids"
    if keys in ([(spec.system_stamp, False)], [(spec.system_stamp, False), (spec.id_field, False)]) or (
        not keys and min_stamp is not None
    ):
        return "stamp"
    if keys in ([(spec.system_stamp, True)], [(spec.system_stamp, True), (spec.id_field, True)]):
        return "stamp_desc"
    if keys in ([], [(spec.id_field, False)]):
        return "index"
    return "sorted"


# ------------------------------------------------------------------ execution
class SortKey:
    """A row's position under ORDER BY (nulls placed as asked, text caseless), the index breaking ties."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[tuple[int, object, bool], ...]) -> None:
        self.parts = parts  # (null rank, value, descending) per key

    def __lt__(self, other: SortKey) -> bool:
        for (rank_a, a, desc), (rank_b, b, _) in zip(self.parts, other.parts, strict=True):
            if rank_a != rank_b:
                return rank_a < rank_b
            if a != b:
                return a > b if desc else a < b  # type: ignore[operator]
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SortKey) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.parts)


def sort_key(query: Query) -> Callable[[int, dict], SortKey]:
    spec = query.spec
    keys = [(o.field, o.descending, o.nulls_first, caseless(spec.by_name[o.field])) for o in query.order]

    def key(index: int, rec: dict) -> SortKey:
        parts = []
        for name, desc, nulls_first, fold in keys:
            value = rec.get(name)
            if value is None:
                parts.append((0 if nulls_first else 2, None, desc))
            else:
                parts.append((1, _fold(value) if fold else value, desc))
        parts.append((1, index, False))
        return SortKey(tuple(parts))

    return key


Position = tuple[int, int] | int | SortKey


@dataclass(frozen=True)
class Page:
    rows: list[tuple[int, dict]]
    position: Position | None  # keyset position after the last row (None when the page is empty)
    more: bool
    matched: int | None = None  # every matching row, when the page had to look at them all anyway


def _visible(rec: dict, deleted: Deleted) -> bool:
    gone = bool(rec.get(DELETED))
    return gone if deleted == "only" else (not gone or deleted == "include")


def _flags(deleted: Deleted) -> dict[str, bool]:
    return {"include_deleted": deleted == "include", "only_deleted": deleted == "only"}


def _by_index(store: ObjectStore, start: int, p: Plan) -> Iterator[tuple[int, dict]]:
    """Rows in id order from ``start``; with a stamp lower bound, older untouched base rows are skipped.

    Base stamps grow with the index, so below the first base index at or after the bound only
    overlay (changed or created) records can match.
    """
    start = max(start, p.min_index or 0)
    if p.min_stamp is None:
        rows: Iterable[tuple[int, dict]] = store.iter_by_index(start, **_flags(p.deleted))
    else:
        cut = max(start, min(store.gen.first_index_at_or_after(p.min_stamp), store.base_count))
        early = sorted(i for i in store.overlay if start <= i < cut)
        indices = heapq.merge(early, range(cut, store.total))
        rows = ((i, rec) for i in indices if (rec := store.get(i)) is not None and _visible(rec, p.deleted))
    if p.max_index is not None:
        rows = takewhile(lambda pair: pair[0] <= p.max_index, rows)  # type: ignore[operator]
    return iter(rows)


def _by_stamp_desc(store: ObjectStore, after: tuple[int, int] | None, p: Plan) -> Iterator[tuple[int, dict]]:
    """Rows by (stamp, index) descending, without sorting the whole object.

    Base stamps are arithmetic in the index, so the base half is a countdown; only the overlay
    (changed records) is sorted.
    """
    field, gen, overlay = store.spec.system_stamp, store.gen, store.overlay
    big = 2**62
    upper = after if after is not None else ((p.max_stamp if p.max_stamp is not None else big), big)
    low = p.min_stamp if p.min_stamp is not None else -big
    changed = sorted(
        ((rec[field], i) for i, rec in overlay.items() if low <= rec[field] and (rec[field], i) < upper),
        reverse=True,
    )
    top = min(store.base_count, gen.first_index_at_or_after(min(upper[0], big - 1) + 1)) - 1
    bottom = gen.first_index_at_or_after(low) if p.min_stamp is not None else 0

    def base() -> Iterator[tuple[int, int]]:
        for i in range(top, bottom - 1, -1):
            key = (gen.base_stamp(i), i)
            if i not in overlay and key < upper:
                yield key

    for _stamp, i in heapq.merge(changed, base(), reverse=True):
        rec = store.get(i)
        if rec is not None and _visible(rec, p.deleted):
            yield i, rec


def _deleted_rows(store: ObjectStore, p: Plan, after: Position | None) -> Iterator[tuple[int, dict]]:
    """Deleted rows in the plan's order: only overlay records can be deleted, so no base row is generated."""
    field = store.spec.system_stamp
    rows = [(i, rec) for i, rec in store.overlay.items() if rec.get(DELETED)]
    if p.path in ("stamp", "stamp_desc"):
        descending = p.path == "stamp_desc"
        rows.sort(key=lambda pair: (pair[1][field], pair[0]), reverse=descending)
        if isinstance(after, tuple):
            rows = [
                (i, r) for i, r in rows if ((r[field], i) < after if descending else (r[field], i) > after)
            ]
        return iter(rows)
    rows.sort(key=lambda pair: pair[0])
    return iter([(i, r) for i, r in rows if i > after] if isinstance(after, int) else rows)


def _ordered_rows(store: ObjectStore, p: Plan, after: Position | None) -> Iterator[tuple[int, dict]]:
    if p.deleted == "only":
        return _deleted_rows(store, p, after)
    if p.path == "stamp":
        rows = store.iter_by_stamp(
            after=after,
            min_stamp=p.min_stamp,  # type: ignore[arg-type]
            **_flags(p.deleted),
        )
        if p.max_stamp is not None:
            field = store.spec.system_stamp
            return takewhile(lambda pair: pair[1][field] <= p.max_stamp, rows)  # type: ignore[operator]
        return rows
    if p.path == "stamp_desc":
        return _by_stamp_desc(store, after, p)  # type: ignore[arg-type]
    return _by_index(store, after + 1 if isinstance(after, int) else 0, p)


def _candidates(store: ObjectStore, p: Plan) -> Iterator[tuple[int, dict]]:
    """Rows a sorted query must consider, narrowed by whichever bound the plan has."""
    if p.ids is not None:
        return ((i, rec) for i in p.ids if (rec := store.get(i)) is not None and _visible(rec, p.deleted))
    if p.deleted == "only":
        return _deleted_rows(store, p, None)
    if p.min_stamp is not None:
        return _ordered_rows(store, Plan("stamp", p.deleted, p.min_stamp, p.max_stamp), None)
    return _by_index(store, 0, p)


def position_of(query: Query, p: Plan, index: int, rec: dict) -> Position:
    if p.path in ("stamp", "stamp_desc"):
        return rec[query.spec.system_stamp], index
    if p.path == "index":
        return index
    return sort_key(query)(index, rec)


def fetch_page(
    store: ObjectStore, query: Query, p: Plan, after: Position | None, size: int, skip: int = 0
) -> Page:
    """Up to ``size`` matching rows after the keyset position ``after`` (skipping ``skip`` first)."""
    if p.empty or size <= 0:
        return Page([], None, False, 0 if p.empty else None)
    want = skip + size + 1  # one extra row tells whether another page exists
    matched = None
    if p.path in ("stamp", "stamp_desc", "index"):
        rows = list(islice((pair for pair in _ordered_rows(store, p, after) if query.matches(pair[1])), want))
    else:
        key = sort_key(query)
        seen = [0]

        def keyed() -> Iterator[tuple[SortKey, int, dict]]:
            for i, rec in _candidates(store, p):
                if query.matches(rec):
                    seen[0] += 1
                    k = key(i, rec)
                    if after is None or after < k:  # type: ignore[operator]
                        yield k, i, rec

        rows = [(i, rec) for _k, i, rec in heapq.nsmallest(want, keyed(), key=lambda t: t[0])]
        matched = seen[0] if after is None else None
    rows = rows[skip:]
    more = len(rows) > size
    rows = rows[:size]
    position = position_of(query, p, *rows[-1]) if rows else None
    return Page(rows, position, more, matched)


def first_page(store: ObjectStore, query: Query, p: Plan, size: int) -> tuple[Page, int]:
    """The first page and the number of matching rows, scanning at most once for both."""
    page = fetch_page(store, query, p, None, size, skip=query.offset)
    total = page.matched if page.matched is not None else count_matches(store, query, p)
    return page, window(total, query)


def window(matching: int, query: Query) -> int:
    """How many rows the query returns in all: OFFSET skips, LIMIT caps."""
    n = max(0, matching - query.offset)
    return n if query.limit is None else min(n, query.limit)


def count_matches(store: ObjectStore, query: Query, p: Plan) -> int:
    """Rows matching the WHERE (before OFFSET and LIMIT); arithmetic when the plan is exact."""
    if p.empty:
        return 0
    if p.exact and p.ids is None:
        if p.min_index is not None or p.max_index is not None:
            return _count_index_range(store, p)
        flags = _flags(p.deleted)
        n = store.count(p.min_stamp, **flags)
        return n - store.count(p.max_stamp + 1, **flags) if p.max_stamp is not None else n
    rows = _candidates(store, p) if p.path in ("ids", "sorted") else _ordered_rows(store, p, None)
    return sum(1 for _i, rec in rows if query.matches(rec))


def _count_index_range(store: ObjectStore, p: Plan) -> int:
    lo = max(0, p.min_index or 0)
    hi = min(store.total - 1, p.max_index if p.max_index is not None else store.total - 1)
    if hi < lo:
        return 0
    gone = sum(1 for i, rec in store.overlay.items() if lo <= i <= hi and rec.get(DELETED))
    return {"exclude": hi - lo + 1 - gone, "include": hi - lo + 1, "only": gone}[p.deleted]
