"""The OData v4 subset Dataverse clients send: ``$filter`` expressions and entity keys.

A lark grammar parses the text into a small immutable AST; ``compile_filter`` type-checks it
against the entity's columns (as Dataverse does, so a quoted datetime is a 400 here too) and
turns it into a plain predicate over stored records. The dialect inspects the AST to pick an
index (``conjuncts``), so the parser never needs to know about the store.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from .formats import parse_datetime_ms

_GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr
        | or_expr "or" and_expr              -> or_
?and_expr: unary
         | and_expr "and" unary               -> and_
?unary: "not" bool_primary                    -> not_
      | comparison
      | bool_primary
?bool_primary: "(" or_expr ")"
             | NAME "(" operand ("," operand)* ")"       -> call
             | QNAME "(" [named_arg ("," named_arg)*] ")" -> query_function
comparison: operand CMP operand
?operand: NAME                                -> prop
        | literal
named_arg: NAME "=" (literal | literal_list)
literal_list: "[" [literal ("," literal)*] "]"
?literal: STRING                              -> string
        | NUMBER                              -> number
        | DATETIME                            -> datetime
        | DATE                                -> date
        | GUID                                -> guid
        | "true"                              -> true
        | "false"                             -> false
        | "null"                              -> null

CMP: "eq" | "ne" | "gt" | "ge" | "lt" | "le"
QNAME.2: NAME ("." NAME)+
NAME: /[A-Za-z_][A-Za-z0-9_]*/
STRING: /'(?:[^']|'')*'/
GUID.4: /[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}/
DATETIME.3: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})/
DATE.2: /\d{4}-\d{2}-\d{2}/
NUMBER: /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/

%import common.WS
%ignore WS
"""

# an entity key segment: ``(<guid>)``, ``('value')`` or ``(name='value',other=1)``
_KEY_GRAMMAR = r"""
?start: literal
      | key_pair ("," key_pair)*              -> pairs
key_pair: NAME "=" literal
?literal: STRING                              -> string
        | NUMBER                              -> number
        | GUID                                -> guid
NAME: /[A-Za-z_][A-Za-z0-9_]*/
STRING: /'(?:[^']|'')*'/
GUID.4: /\{?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}?/
NUMBER: /-?\d+(?:\.\d+)?/
%import common.WS
%ignore WS
"""

# how each literal kind is named in OData type errors
LITERAL_EDM = {
    "string": "Edm.String",
    "int": "Edm.Int32",
    "decimal": "Edm.Decimal",
    "bool": "Edm.Boolean",
    "datetime": "Edm.DateTimeOffset",
    "date": "Edm.Date",
    "guid": "Edm.Guid",
    "null": "null",
}
# which literal kinds a column of each EDM type can be compared with (null goes with all)
_COMPATIBLE = {
    "Edm.String": {"string"},
    "Edm.Int32": {"int", "decimal"},
    "Edm.Int64": {"int", "decimal"},
    "Edm.Decimal": {"int", "decimal"},
    "Edm.Double": {"int", "decimal"},
    "Edm.Boolean": {"bool"},
    "Edm.DateTimeOffset": {"datetime", "date"},
    "Edm.Guid": {"guid"},
}
OPERATOR_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_ORDERED = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class ODataError(ValueError):
    """A query the service refuses with 400; ``code`` is the Dataverse error code."""

    def __init__(self, message: str, code: str = "0x80060888") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ----------------------------------------------------------------------------- AST
@dataclass(frozen=True)
class Literal:
    kind: str  # string, int, decimal, bool, datetime (epoch ms), date (epoch ms), guid, null
    value: Any


@dataclass(frozen=True)
class Prop:
    name: str


Operand = Literal | Prop


@dataclass(frozen=True)
class Compare:
    """``left op right``; a literal-on-the-left comparison is normalised to property-first."""

    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Operand, ...]


@dataclass(frozen=True)
class QueryFunction:
    """A Dataverse query function such as ``Microsoft.Dynamics.CRM.In(PropertyName=..., ...)``."""

    name: str
    params: tuple[tuple[str, Literal | tuple[Literal, ...]], ...]


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


Node = Compare | Call | QueryFunction | And | Or | Not


def conjuncts(node: Node) -> list[Node]:
    """The top-level ``and`` terms: each must hold, so each may narrow the scan."""
    if isinstance(node, And):
        return conjuncts(node.left) + conjuncts(node.right)
    return [node]


# ----------------------------------------------------------------------------- parsing
def _string(token: str) -> Literal:
    return Literal("string", token[1:-1].replace("''", "'"))


def _number(token: str) -> Literal:
    if re.fullmatch(r"-?\d+", token):
        return Literal("int", int(token))
    return Literal("decimal", float(token))


@v_args(inline=True)
class _ToAst(Transformer):
    def or_(self, left: Node, right: Node) -> Or:
        return Or(left, right)

    def and_(self, left: Node, right: Node) -> And:
        return And(left, right)

    def not_(self, operand: Node) -> Not:
        return Not(operand)

    def comparison(self, left: Operand, op: Any, right: Operand) -> Compare:
        op = str(op)
        if isinstance(left, Literal) and isinstance(right, Prop):
            return Compare(FLIPPED[op], right, left)
        return Compare(op, left, right)

    def call(self, name: Any, *args: Operand) -> Call:
        return Call(str(name), tuple(args))

    def query_function(self, name: Any, *params: tuple | None) -> QueryFunction:
        return QueryFunction(str(name), tuple(p for p in params if p is not None))

    def named_arg(self, name: Any, value: Literal | tuple) -> tuple:
        return str(name), value

    def literal_list(self, *items: Literal | None) -> tuple[Literal, ...]:
        return tuple(i for i in items if i is not None)

    def prop(self, name: Any) -> Prop:
        return Prop(str(name))

    def string(self, token: Any) -> Literal:
        return _string(str(token))

    def number(self, token: Any) -> Literal:
        return _number(str(token))

    def datetime(self, token: Any) -> Literal:
        return Literal("datetime", parse_datetime_ms(str(token)))

    def date(self, token: Any) -> Literal:
        return Literal("date", parse_datetime_ms(str(token)))

    def guid(self, token: Any) -> Literal:
        return Literal("guid", str(token).strip("{}").lower())

    def true(self) -> Literal:
        return Literal("bool", True)

    def false(self) -> Literal:
        return Literal("bool", False)

    def null(self) -> Literal:
        return Literal("null", None)

    def key_pair(self, name: Any, value: Literal) -> tuple[str, Literal]:
        return str(name), value

    def pairs(self, *items: tuple[str, Literal]) -> dict[str, Literal]:
        return dict(items)


_FILTER_PARSER = Lark(_GRAMMAR, parser="lalr", maybe_placeholders=True)
_KEY_PARSER = Lark(_KEY_GRAMMAR, parser="lalr")


def _syntax_error(exc: UnexpectedInput, text: str) -> ODataError:
    if isinstance(exc, UnexpectedCharacters):
        return ODataError(
            f"Syntax error: character '{exc.char}' at position {exc.pos_in_stream} is not valid in '{text}'."
        )
    token = getattr(exc, "token", None)
    at_end = isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END"
    position = len(text) if at_end else token.start_pos
    return ODataError(f"Syntax error at position {position} in '{text}'.")


@lru_cache(maxsize=512)
def parse_filter(text: str) -> Node:
    """Parse a ``$filter`` value; raises ODataError (400) for anything outside the grammar."""
    if not text.strip():
        raise ODataError("The $filter query option must not be empty.")
    try:
        return _ToAst().transform(_FILTER_PARSER.parse(text))
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    except VisitError as exc:  # a literal the grammar accepts but the calendar does not
        raise ODataError(f"Unrecognized literal in '{text}': {exc.orig_exc}") from None


def parse_key(text: str) -> Literal | dict[str, Literal]:
    """Parse the inside of ``entityset(...)``: a bare key value or ``name=value`` pairs."""
    try:
        return _ToAst().transform(_KEY_PARSER.parse(text))
    except UnexpectedInput:
        raise ODataError(f"Bad Request - Error in query syntax: the key '({text})' is not valid.") from None


# ----------------------------------------------------------------------------- compiling
@dataclass(frozen=True)
class Column:
    """How the compiler reads one attribute: its EDM type and a getter over a stored record."""

    edm: str
    get: Callable[[dict], Any]


Predicate = Callable[[dict], bool]


def comparable(edm: str, value: Any) -> Any:
    """A stored value as Dataverse compares it: strings case-insensitively (its default
    collation), datetimes at whole seconds (its precision), GUIDs case-insensitively."""
    if value is None:
        return None
    if edm == "Edm.String":
        return value.casefold() if isinstance(value, str) else value
    if edm == "Edm.DateTimeOffset":
        return value // 1000 * 1000
    if edm == "Edm.Guid":
        return value.lower()
    return value


def _literal_value(edm: str, lit: Literal) -> Any:
    """A literal in the same space as ``comparable`` values (datetime literals keep their ms)."""
    if lit.kind == "null":
        return None
    if edm == "Edm.String":
        return lit.value.casefold()
    return lit.value


def _check_types(edm: str, lit: Literal, op: str) -> None:
    if lit.kind != "null" and lit.kind not in _COMPATIBLE.get(edm, set()):
        raise ODataError(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{edm}' and '{LITERAL_EDM[lit.kind]}' for operator kind '{OPERATOR_KIND[op]}'."
        )


def _compare_prop_literal(col: Column, op: str, lit: Literal) -> Predicate:
    _check_types(col.edm, lit, op)
    get, edm, want = col.get, col.edm, _literal_value(col.edm, lit)
    if op == "eq":
        return lambda rec: comparable(edm, get(rec)) == want
    if op == "ne":
        return lambda rec: comparable(edm, get(rec)) != want
    if want is None:  # ordering against null matches nothing, as in SQL
        return lambda rec: False
    fn = _ORDERED[op]

    def ordered(rec: dict) -> bool:
        value = comparable(edm, get(rec))
        return value is not None and fn(value, want)

    return ordered


def _compare(node: Compare, column: Callable[[str], Column]) -> Predicate:
    left, right, op = node.left, node.right, node.op
    if isinstance(left, Prop) and isinstance(right, Literal):
        return _compare_prop_literal(column(left.name), op, right)
    if isinstance(left, Prop) and isinstance(right, Prop):
        a, b = column(left.name), column(right.name)
        if a.edm != b.edm:
            raise ODataError(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{a.edm}' and '{b.edm}' for operator kind '{OPERATOR_KIND[op]}'."
            )
        return _compare_columns(a, b, op)
    raise ODataError(
        "A comparison must involve at least one property; "
        f"found two literals for operator kind '{OPERATOR_KIND[op]}'."
    )


def _compare_columns(a: Column, b: Column, op: str) -> Predicate:
    edm = a.edm

    def both(rec: dict) -> bool:
        x, y = comparable(edm, a.get(rec)), comparable(edm, b.get(rec))
        if op == "eq":
            return x == y
        if op == "ne":
            return x != y
        return x is not None and y is not None and _ORDERED[op](x, y)

    return both


_STRING_FUNCTIONS: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda value, part: part in value,
    "startswith": str.startswith,
    "endswith": str.endswith,
}


def _call(node: Call, column: Callable[[str], Column]) -> Predicate:
    fn = _STRING_FUNCTIONS.get(node.name)
    if fn is None:
        raise ODataError(
            f"An unknown function with name '{node.name}' was found. This may also be a function "
            "import or a key lookup on a navigation property, which is not allowed."
        )
    if len(node.args) != 2 or not isinstance(node.args[0], Prop) or not isinstance(node.args[1], Literal):
        raise ODataError(f"The function '{node.name}' takes a property and a string literal.")
    col, lit = column(node.args[0].name), node.args[1]
    if col.edm != "Edm.String" or lit.kind != "string":
        raise ODataError(
            f"No function signature for the function with name '{node.name}' matches the specified "
            f"arguments. The function signatures considered are: {node.name}(Edm.String Nullable=true, "
            "Edm.String Nullable=true)."
        )
    get, part = col.get, lit.value.casefold()

    def matches(rec: dict) -> bool:
        value = get(rec)
        return isinstance(value, str) and fn(value.casefold(), part)

    return matches


def _coerce_listed(col: Column, lit: Literal, function: str) -> Any:
    """Dataverse query functions take their values as strings, whatever the column type."""
    if lit.kind == "string" and col.edm != "Edm.String":
        text = lit.value
        try:
            if col.edm in ("Edm.Int32", "Edm.Int64"):
                return int(text)
            if col.edm in ("Edm.Decimal", "Edm.Double"):
                return float(text)
            if col.edm == "Edm.DateTimeOffset":
                return parse_datetime_ms(text)
            if col.edm == "Edm.Boolean" and text.lower() in ("true", "false"):
                return text.lower() == "true"
            if col.edm == "Edm.Guid" and _GUID.match(text.strip("{}").lower()):
                return text.strip("{}").lower()
        except ValueError:
            pass
        raise ODataError(f"{function}: the value '{text}' is not valid for a property of type '{col.edm}'.")
    _check_types(col.edm, lit, "eq")
    return _literal_value(col.edm, lit)


def _query_function(node: QueryFunction, column: Callable[[str], Column]) -> Predicate:
    short = node.name.rsplit(".", 1)[-1]
    if not node.name.startswith("Microsoft.Dynamics.CRM.") or short not in (
        "In",
        "NotIn",
        "Between",
        "NotBetween",
    ):
        raise ODataError(f"The query function '{node.name}' is not supported by the sandbox.")
    params = dict(node.params)
    name, values = params.get("PropertyName"), params.get("PropertyValues")
    if not isinstance(name, Literal) or name.kind != "string" or not isinstance(values, tuple):
        raise ODataError(f"{node.name} needs PropertyName='<attribute>' and PropertyValues=[...].")
    col = column(name.value)
    wanted = [_coerce_listed(col, v, node.name) for v in values]
    get, edm = col.get, col.edm
    if short in ("In", "NotIn"):
        members = set(wanted)
        negate = short == "NotIn"
        return lambda rec: (comparable(edm, get(rec)) in members) != negate
    if len(wanted) != 2 or None in wanted:
        raise ODataError(f"{node.name} needs exactly two non-null PropertyValues.")
    low, high = wanted
    negate = short == "NotBetween"

    def between(rec: dict) -> bool:
        value = comparable(edm, get(rec))
        return value is not None and (low <= value <= high) != negate

    return between


def compile_filter(node: Node, column: Callable[[str], Column]) -> Predicate:
    """A predicate over stored records; ``column`` raises ODataError for unknown properties."""
    if isinstance(node, And):
        a, b = compile_filter(node.left, column), compile_filter(node.right, column)
        return lambda rec: a(rec) and b(rec)
    if isinstance(node, Or):
        a, b = compile_filter(node.left, column), compile_filter(node.right, column)
        return lambda rec: a(rec) or b(rec)
    if isinstance(node, Not):
        inner = compile_filter(node.operand, column)
        return lambda rec: not inner(rec)
    if isinstance(node, Compare):
        return _compare(node, column)
    if isinstance(node, Call):
        return _call(node, column)
    return _query_function(node, column)


__all__ = [
    "And",
    "Call",
    "Column",
    "Compare",
    "Literal",
    "Node",
    "Not",
    "ODataError",
    "Or",
    "Predicate",
    "Prop",
    "QueryFunction",
    "comparable",
    "compile_filter",
    "conjuncts",
    "parse_filter",
    "parse_key",
]
