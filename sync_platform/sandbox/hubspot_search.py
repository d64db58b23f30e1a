"""HubSpot CRM search (``POST /crm/v3/objects/{obj}/search``): parsing, filtering and planning.

HubSpot search pages by offset and refuses to go past 10,000 results, which is why an
incremental reader must window its time range. Over a million-record store a scan per request
is too slow, so a request sorted by the system stamp (or by id) is answered from the store's
ordered streams, with the bound filters turned into stream limits and ``total`` computed
arithmetically when nothing else filters.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from .dialect import SandboxError
from .formats import parse_datetime_ms
from .schema import BOOLEAN, DATETIME, ID, INT, FieldSpec, ObjectSpec
from .store import DELETED, ObjectStore

MAX_LIMIT = 200
RESULT_CAP = 10_000
MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 6, 18
OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
BOUND_OPERATORS = frozenset({"EQ", "LT", "LTE", "GT", "GTE", "BETWEEN"})
ID_PROPERTY = "hs_object_id"
# what the free-text ``query`` looks at (HubSpot searches a few default text properties)
QUERY_PROPERTIES = {
    "contacts": ("firstname", "lastname", "email", "phone", "company"),
    "companies": ("name", "domain", "phone"),
    "tickets": ("subject", "content"),
}

Row = tuple[int, dict]
Predicate = Callable[[dict], bool]


def invalid(message: str) -> SandboxError:
    return SandboxError(400, message, "VALIDATION_ERROR")


# ---------------------------------------------------------------- values
def normalize(spec: FieldSpec, value: object) -> object | None:
    """A stored value in comparable form: ms for datetimes, numbers for ids, lower-case text."""
    if value is None or value == "":
        return None
    if spec.type == DATETIME:
        return int(value)  # type: ignore[arg-type]
    if spec.type == BOOLEAN:
        return value if isinstance(value, bool) else str(value).strip().lower() == "true"
    if spec.type in (INT, ID):
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return str(value).strip().lower()
    return str(value).strip().lower()


def coerce(spec: FieldSpec, value: object) -> object:
    """A filter value in the same comparable form as :func:`normalize` gives stored values."""
    if value is None:
        raise invalid(f"Filter on {spec.name} is missing a value.")
    text = str(value).strip()
    try:
        if spec.type == DATETIME:
            return parse_datetime_ms(text)
        if spec.type in (INT, ID):
            return float(text)
    except ValueError:
        raise invalid(
            f"{text!r} is not a valid value for property {spec.name} of type "
            f"{'datetime' if spec.type == DATETIME else 'number'}."
        ) from None
    if spec.type == BOOLEAN:
        return text.lower() == "true"
    return text.lower()


def _tokens(text: str) -> set[str]:
    return {t for t in re.split(r"[^\w]+", text) if t}


def _contains_token(haystack: object, token: str) -> bool:
    if not isinstance(haystack, str):
        return False
    if "*" in token:
        return fnmatch.fnmatchcase(haystack, token)
    return haystack == token or token in _tokens(haystack)


# ---------------------------------------------------------------- filters
@dataclass(frozen=True)
class Filter:
    prop: FieldSpec
    op: str
    value: object = None
    high: object = None
    values: tuple[object, ...] = ()

    def predicate(self) -> Predicate:
        spec, name, op = self.prop, self.prop.name, self.op
        v, hi, values = self.value, self.high, frozenset(self.values)

        def get(rec: dict) -> object | None:
            return normalize(spec, rec.get(name))

        tests: dict[str, Callable[[object | None], bool]] = {
            "HAS_PROPERTY": lambda x: x is not None,
            "NOT_HAS_PROPERTY": lambda x: x is None,
            "EQ": lambda x: x == v,
            "NEQ": lambda x: x != v,
            "LT": lambda x: x is not None and x < v,  # type: ignore[operator]
            "LTE": lambda x: x is not None and x <= v,  # type: ignore[operator]
            "GT": lambda x: x is not None and x > v,  # type: ignore[operator]
            "GTE": lambda x: x is not None and x >= v,  # type: ignore[operator]
            "BETWEEN": lambda x: x is not None and v <= x <= hi,  # type: ignore[operator]
            "IN": lambda x: x in values,
            "NOT_IN": lambda x: x not in values,
            "CONTAINS_TOKEN": lambda x: _contains_token(x, str(v)),
            "NOT_CONTAINS_TOKEN": lambda x: not _contains_token(x, str(v)),
        }
        test = tests[op]

        def matches(rec: dict) -> bool:
            try:
                return test(get(rec))
            except TypeError:  # a text value in a numeric comparison matches nothing
                return False

        return matches

    def bounds(self) -> tuple[int | None, int | None]:
        """Integer (lo, hi) this filter puts on its property, for stream planning."""
        op, v, hi = self.op, self.value, self.high
        if op == "EQ":
            return math.ceil(v), math.floor(v)  # type: ignore[arg-type]
        if op == "GT":
            return math.floor(v) + 1, None  # type: ignore[arg-type]
        if op == "GTE":
            return math.ceil(v), None  # type: ignore[arg-type]
        if op == "LT":
            return None, math.ceil(v) - 1  # type: ignore[arg-type]
        if op == "LTE":
            return None, math.floor(v)  # type: ignore[arg-type]
        return math.ceil(v), math.floor(hi)  # type: ignore[arg-type]  # BETWEEN


def parse_filter(raw: object, spec: ObjectSpec) -> Filter:
    if not isinstance(raw, dict):
        raise invalid("Each filter must be an object with propertyName and operator.")
    name, op = raw.get("propertyName"), str(raw.get("operator") or "").upper()
    prop = spec.field(str(name)) if name else None
    if prop is None:
        raise invalid(f"There was a problem with the request: property {name!r} does not exist.")
    if op not in OPERATORS:
        raise invalid(
            f"Unknown filter operator {raw.get('operator')!r}; "
            f"expected one of {', '.join(sorted(OPERATORS))}."
        )
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return Filter(prop, op)
    if op in ("IN", "NOT_IN"):
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise invalid(f"Operator {op} on {prop.name} needs a non-empty 'values' list.")
        return Filter(prop, op, values=tuple(coerce(prop, x) for x in values))
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        return Filter(prop, op, value=str(raw.get("value") or "").strip().lower())
    if op == "BETWEEN":
        return Filter(prop, op, value=coerce(prop, raw.get("value")), high=coerce(prop, raw.get("highValue")))
    return Filter(prop, op, value=coerce(prop, raw.get("value")))


# ---------------------------------------------------------------- request
@dataclass
class SearchRequest:
    groups: list[list[Filter]]
    sort: tuple[str, bool] | None  # (property, descending)
    properties: list[str]
    limit: int
    offset: int
    query: str | None = None
    predicate: Predicate = field(init=False)

    def __post_init__(self) -> None:
        compiled = [[f.predicate() for f in group] for group in self.groups]
        if not compiled:
            self.predicate = lambda rec: True
        elif len(compiled) == 1:
            only = compiled[0]
            self.predicate = lambda rec: all(p(rec) for p in only)
        else:
            self.predicate = lambda rec: any(all(p(rec) for p in group) for group in compiled)


def _int(value: object, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise invalid(f"{name} must be an integer, got {value!r}.") from None
    if number < 0:
        raise invalid(f"{name} must not be negative, got {number}.")
    return number


def _parse_sort(raw: object, spec: ObjectSpec) -> tuple[str, bool] | None:
    if not raw:
        return None
    if not isinstance(raw, list):
        raise invalid("sorts must be a list.")
    first = raw[0]  # HubSpot honours a single sort
    if isinstance(first, str):
        name, desc = first.lstrip("-"), first.startswith("-")
    elif isinstance(first, dict):
        name = str(first.get("propertyName") or "")
        desc = str(first.get("direction") or "ASCENDING").upper().startswith("DESC")
    else:
        raise invalid("Each sort must be a property name or {propertyName, direction}.")
    if spec.field(name) is None:
        raise invalid(f"Cannot sort by unknown property {name!r}.")
    return name, desc


def parse_search(body: object, spec: ObjectSpec) -> SearchRequest:
    if not isinstance(body, dict):
        raise invalid("The search body must be a JSON object.")
    limit = _int(body.get("limit"), "limit", 10)
    if limit > MAX_LIMIT:
        raise invalid(f"limit must be less than or equal to {MAX_LIMIT}, got {limit}.")
    offset = _int(body.get("after"), "after", 0)
    if offset + limit > RESULT_CAP:
        # the real wording is unverified; the status and category are what clients branch on
        raise invalid(
            f"Search results are capped at {RESULT_CAP}: after ({offset}) + limit ({limit}) "
            f"goes past the cap. Narrow the filter (for example, a smaller time window)."
        )
    raw_groups = body.get("filterGroups") or []
    if not isinstance(raw_groups, list) or len(raw_groups) > MAX_GROUPS:
        raise invalid(f"filterGroups must be a list of at most {MAX_GROUPS} groups.")
    groups = []
    for raw in raw_groups:
        filters = raw.get("filters") if isinstance(raw, dict) else None
        if not isinstance(filters, list) or len(filters) > MAX_FILTERS_PER_GROUP:
            raise invalid(
                f"Each filter group needs a 'filters' list of at most {MAX_FILTERS_PER_GROUP} filters."
            )
        groups.append([parse_filter(f, spec) for f in filters])
    if sum(len(g) for g in groups) > MAX_FILTERS:
        raise invalid(f"A search may use at most {MAX_FILTERS} filters in total.")
    props = body.get("properties") or []
    query = body.get("query")
    request = SearchRequest(
        [g for g in groups if g],
        _parse_sort(body.get("sorts"), spec),
        [str(p) for p in props] if isinstance(props, list) else [],
        limit,
        offset,
        str(query).strip().lower() if query else None,
    )
    if request.query:
        request.predicate = _with_query(request.predicate, request.query, spec)
    return request


def _with_query(base: Predicate, query: str, spec: ObjectSpec) -> Predicate:
    names = [n for n in QUERY_PROPERTIES.get(spec.name, ()) if spec.field(n)]
    words = query.split()

    def matches(rec: dict) -> bool:
        text = " ".join(str(rec.get(n) or "") for n in names).lower()
        return all(w in text for w in words)

    return lambda rec: base(rec) and matches(rec)


# ---------------------------------------------------------------- planning
def _group_bounds(group: list[Filter], prop: str) -> tuple[int | None, int | None, bool]:
    """(lo, hi, only bound filters on ``prop``) for one AND-group."""
    lo = hi = None
    only = True
    for f in group:
        if f.prop.name != prop or f.op not in BOUND_OPERATORS:
            only = False
            continue
        flo, fhi = f.bounds()
        lo = flo if lo is None or (flo is not None and flo > lo) else lo
        hi = fhi if hi is None or (fhi is not None and fhi < hi) else hi
    return lo, hi, only


def plan_bounds(groups: list[list[Filter]], prop: str) -> tuple[int | None, int | None, bool]:
    """The hull of the groups' bounds on ``prop``, and whether those bounds are the whole filter."""
    if not groups:
        return None, None, True
    per_group = [_group_bounds(g, prop) for g in groups]
    los, his = [b[0] for b in per_group], [b[1] for b in per_group]
    lo = None if any(x is None for x in los) else min(los)  # type: ignore[type-var]
    hi = None if any(x is None for x in his) else max(his)  # type: ignore[type-var]
    return lo, hi, len(groups) == 1 and per_group[0][2]


@dataclass
class SearchResult:
    total: int
    rows: list[Row]


def _page(stream: Iterable[Row], request: SearchRequest, total: int | None) -> SearchResult:
    """One page of a filtered stream; reads on to count the rest only when ``total`` is unknown."""
    start, end = request.offset, request.offset + request.limit
    rows: list[Row] = []
    seen = 0
    for row in stream:
        if not request.predicate(row[1]):
            continue
        if start <= seen < end:
            rows.append(row)
        seen += 1
        if seen >= end and total is not None:
            break
    return SearchResult(seen if total is None else total, rows)


def _stamp_stream(store: ObjectStore, lo: int | None, hi: int | None, descending: bool) -> Iterator[Row]:
    stamp = store.spec.system_stamp
    for index, rec in store.iter_by_stamp(min_stamp=lo, descending=descending):
        if hi is not None and rec[stamp] > hi:
            if descending:
                continue
            return
        yield index, rec


def _id_stream(store: ObjectStore, lo: int | None, hi: int | None) -> Iterator[Row]:
    start = max(0, (lo or 1) - 1)  # ids are index + 1
    for index, rec in store.iter_by_index(start):
        if hi is not None and index + 1 > hi:
            return
        yield index, rec


SEEK_FROM_OFFSET = 1_000


def _seek_stamp(store: ObjectStore, lo: int | None, offset: int) -> tuple[int | None, int]:
    """Where the ``offset``-th row from ``lo`` sits: (stamp to stream from, rows to skip there).

    Found by bisecting on ``store.count`` instead of generating the skipped rows, so a deep
    page costs a few dozen counts rather than ``offset`` generated records.
    """
    stamp = store.spec.system_stamp
    with store.lock:
        newest = max((rec[stamp] for rec in store.overlay.values()), default=0)
    low = lo if lo is not None else min(store.gen.base_stamp(0), *(r[stamp] for r in store.overlay.values()))
    high = max(newest, store.gen.base_stamp(store.base_count - 1)) + 1
    from_lo = store.count(min_stamp=low)
    while low < high:  # largest s with fewer than offset + 1 rows in [lo, s)
        mid = (low + high + 1) // 2
        if from_lo - store.count(min_stamp=mid) <= offset:
            low = mid
        else:
            high = mid - 1
    return low, offset - (from_lo - store.count(min_stamp=low))


def _seek_id(store: ObjectStore, lo: int | None, offset: int) -> int:
    """The index of the ``offset``-th live record from id ``lo``: only archived records leave gaps."""
    first = max(0, (lo or 1) - 1)
    index = first + offset
    with store.lock:
        deleted = sorted(i for i, rec in store.overlay.items() if rec.get(DELETED) and i >= first)
    for gap in deleted:
        if gap > index:
            break
        index += 1
    return index


def _count_stamps(store: ObjectStore, lo: int | None, hi: int | None) -> int:
    upper = store.count(min_stamp=hi + 1) if hi is not None else 0
    return max(0, store.count(min_stamp=lo) - upper)


def _count_ids(store: ObjectStore, lo: int | None, hi: int | None) -> int:
    first = max(0, (lo or 1) - 1)
    last = min(store.total - 1, hi - 1) if hi is not None else store.total - 1
    if last < first:
        return 0
    with store.lock:
        deleted = sum(1 for i, rec in store.overlay.items() if first <= i <= last and rec.get(DELETED))
    return last - first + 1 - deleted


def _sort_key(spec: FieldSpec) -> Callable[[Row], tuple]:
    def key(row: Row) -> tuple:
        value = normalize(spec, row[1].get(spec.name))
        return (1, 0) if value is None else (0, value)

    return key


def run_search(store: ObjectStore, request: SearchRequest) -> SearchResult:
    """Answer a search without archived records, choosing the cheapest plan for its sort."""
    spec = store.spec
    stamp = spec.system_stamp
    sort = request.sort
    if sort is not None and sort[0] == stamp:
        lo, hi, only = plan_bounds(request.groups, stamp)
        if not (only and not request.query):
            return _page(_stamp_stream(store, lo, hi, sort[1]), request, None)
        total = _count_stamps(store, lo, hi)
        if sort[1] or request.offset < SEEK_FROM_OFFSET:
            return _page(_stamp_stream(store, lo, hi, sort[1]), request, total)
        start, skip = _seek_stamp(store, lo, request.offset)
        stream = islice(_stamp_stream(store, start, hi, False), skip, skip + request.limit)
        return SearchResult(total, list(stream))
    if sort is None or sort == (ID_PROPERTY, False):
        lo, hi, only = plan_bounds(request.groups, ID_PROPERTY)
        if not (only and not request.query):
            return _page(_id_stream(store, lo, hi), request, None)
        stream = _id_stream(store, _seek_id(store, lo, request.offset) + 1, hi)
        return SearchResult(_count_ids(store, lo, hi), list(islice(stream, request.limit)))
    matching = [row for row in store.iter_by_index() if request.predicate(row[1])]
    field_spec = spec.field(sort[0])
    assert field_spec is not None
    matching.sort(key=_sort_key(field_spec), reverse=sort[1])
    return SearchResult(len(matching), matching[request.offset : request.offset + request.limit])
