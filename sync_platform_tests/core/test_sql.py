"""core.sql: names are validated, values can only be bound, statements run on both engines' drivers."""

import duckdb
import pytest

from sync_platform.core.sql import Fragment, ident, idents, integer, join, placeholders, quoted, sql

INJECTIONS = [
    "x; DROP TABLE t",
    "a' OR 1=1",
    'a" OR 1=1',
    "a--",
    "a/*",
    "a b",
    "1abc",
    "",
    "a.b",
    "a\n",
    "tabl\u00e9",
]


def test_the_happy_path_composes_names_and_placeholders():
    statement = sql(
        "SELECT {columns} FROM {table} WHERE entity = ? AND source_id IN ({marks}) LIMIT {n}",
        columns=idents(["source_id", "rule", "_dlt_id"]),
        table=ident("ops", "quarantine"),
        marks=placeholders(3),
        n=integer(50),
    )
    assert statement == (
        "SELECT source_id, rule, _dlt_id FROM ops.quarantine WHERE entity = ? "
        "AND source_id IN (?, ?, ?) LIMIT 50"
    )
    assert isinstance(statement, Fragment) and isinstance(statement, str)


def test_names_are_unquoted_unless_asked_and_nest():
    assert ident("raw_salesforce", "contacts") == "raw_salesforce.contacts"
    assert quoted("ops", "column") == '"ops"."column"'
    inner = sql("(SELECT id FROM {t})", t=ident("listing"))
    outer = sql("SELECT count(*) FROM {relation} AS r", relation=inner)
    assert outer == "SELECT count(*) FROM (SELECT id FROM listing) AS r"
    assert join([ident("a"), quoted("b"), Fragment("TRUE")], " AND ") == 'a AND "b" AND TRUE'
    assert join([]) == ""
    assert placeholders(2, "%s") == "%s, %s"
    assert sql("SELECT '{{literal}}'") == "SELECT '{literal}'"


@pytest.mark.parametrize("name", INJECTIONS)
def test_injection_attempts_are_refused_as_names(name):
    with pytest.raises(ValueError, match="not a safe SQL identifier"):
        ident(name)
    with pytest.raises(ValueError, match="not a safe SQL identifier"):
        quoted("ops", name)
    with pytest.raises(ValueError, match="not a safe SQL identifier"):
        idents(["id", name])


def test_the_error_names_the_bad_identifier():
    with pytest.raises(ValueError, match=r"'x; DROP TABLE t'"):
        ident("ops", "x; DROP TABLE t")


@pytest.mark.parametrize("value", ["a' OR 1=1", "contact", 42, 4.2, None, b"ops"])
def test_a_plain_value_is_refused_it_must_be_bound(value):
    with pytest.raises(TypeError, match="not a Fragment"):
        sql("SELECT * FROM ops.quarantine WHERE entity = {entity}", entity=value)


def test_str_operations_on_a_fragment_lose_its_trust():
    table = ident("ops", "quarantine")
    for derived in (table + " WHERE 1=1", f"{table}", table.replace("ops", "x"), table.lower()):
        with pytest.raises(TypeError):
            sql("SELECT * FROM {t}", t=derived)
    with pytest.raises(TypeError):
        join([table, "x' OR 1=1"])


def test_templates_are_checked_against_the_parts():
    with pytest.raises(ValueError, match="has no part"):
        sql("SELECT * FROM {table}")
    with pytest.raises(ValueError, match="not in the template"):
        sql("SELECT 1", table=ident("t"))
    with pytest.raises(ValueError, match="conversion or format spec"):
        sql("SELECT * FROM {table!r}", table=ident("t"))
    with pytest.raises(ValueError, match="has no part"):
        sql("SELECT * FROM {table.__class__}", table=ident("t"))


def test_bad_arguments():
    for call in (
        lambda: ident(),
        lambda: quoted(),
        lambda: idents([]),
        lambda: placeholders(0),
        lambda: placeholders(True),
        lambda: placeholders(2, "$1"),
    ):
        with pytest.raises(ValueError):
            call()
    for call in (
        lambda: idents("abc"),
        lambda: ident(None),
        lambda: integer("5"),
        lambda: integer(True),
        lambda: integer(2.0),
    ):
        with pytest.raises(TypeError):
            call()


def test_a_composed_statement_runs_and_a_bound_injection_stays_a_value():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA ops")
    conn.execute("CREATE TABLE ops.canary (entity VARCHAR)")
    conn.execute("INSERT INTO ops.canary VALUES ('contact')")
    statement = sql("SELECT count(*) FROM {table} WHERE entity = ?", table=ident("ops", "canary"))
    assert conn.execute(statement, ["contact"]).fetchone() == (1,)
    assert conn.execute(statement, ["x' OR 1=1; DROP TABLE ops.canary; --"]).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM ops.canary").fetchone() == (1,)
