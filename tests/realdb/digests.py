"""Content digests computed without the scripts: what a restore must reproduce exactly."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.realdb.resp import Resp
from tests.realdb.servers import Postgres

# One md5 per kind of content; names are hex-encoded so newlines in them cannot shift a line.
_CATALOG = r"""
with objs as (
  select 'tables' k, encode(convert_to(format('%I.%I', n.nspname, c.relname), 'UTF8'), 'hex') || ' ' ||
         (select string_agg(format('%I %s %s', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull),
                            ',' order by a.attnum)
            from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) v
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.relkind in ('r', 'p', 'v', 'm', 'S') and n.nspname not in ('pg_catalog', 'information_schema')
     and n.nspname not like 'pg_toast%'
  union all
  select 'enums', format('%I.%I', n.nspname, t.typname) || ' ' || string_agg(e.enumlabel, ',' order by e.enumsortorder)
    from pg_type t join pg_enum e on e.enumtypid = t.oid join pg_namespace n on n.oid = t.typnamespace
   group by n.nspname, t.typname
  union all
  select 'views', format('%I.%I', schemaname, viewname) || ' ' || definition from pg_views
   where schemaname not in ('pg_catalog', 'information_schema')
  union all
  select 'constraints', conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    from pg_constraint where connamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  union all
  select 'indexes', indexdef from pg_indexes where schemaname not in ('pg_catalog', 'information_schema')
  union all
  select 'triggers', tgrelid::regclass::text || ' ' || pg_get_triggerdef(oid) from pg_trigger where not tgisinternal
  union all
  select 'functions', pg_get_functiondef(p.oid) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname not in ('pg_catalog', 'information_schema')
  union all
  select 'sequences', format('%I.%I', schemaname, sequencename) || ' ' || coalesce(last_value::text, 'unset')
    from pg_sequences
  union all
  select 'large_objects', oid::text || ' ' || md5(lo_get(oid)) from pg_largeobject_metadata
)
select k || ' ' || md5(string_agg(v, E'\n' order by v collate "C")) from objs group by k order by k;
"""

# One statement per table: its rows in primary-key order (the row's text where there is none).
_ROWS = r"""
select format(
  'select %L || '' '' || count(*) || '' '' || '
  'md5(coalesce(string_agg(t::text, E''\n'' order by %s), '''')) from %I.%I t',
  encode(convert_to(format('%I.%I', n.nspname, c.relname), 'UTF8'), 'hex'),
  coalesce((select string_agg(quote_ident(a.attname), ', ' order by k.ord)
              from pg_index i, unnest(i.indkey) with ordinality k(attnum, ord)
              join pg_attribute a on a.attnum = k.attnum
             where i.indrelid = c.oid and i.indisprimary and a.attrelid = c.oid),
           '(t::text) collate "C"'),
  n.nspname, c.relname)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
   and n.nspname not like 'pg_toast%'
 order by n.nspname, c.relname
\gexec
"""


def postgres_digest(pg: Postgres, db: str, *, skip_tables: tuple[str, ...] = ()) -> dict[str, str]:
    """{kind: md5} for the catalog and {table (hex name): "rows md5"} for each table's rows."""
    out: dict[str, str] = {}
    for line in pg.psql(db, _CATALOG).splitlines():
        kind, digest = line.split(" ", 1)
        out[kind] = digest
    skip = {name.encode().hex() for name in skip_tables}
    for line in pg.psql(db, _ROWS).splitlines():
        name, rest = line.split(" ", 1)
        if name not in skip:
            out[f"rows:{bytes.fromhex(name).decode()}"] = rest
    return out


def redis_digest(port: int, password: str | None = None) -> tuple[dict[str, str], dict[tuple[int, bytes], int]]:
    """({db:key: digest of type, value and DUMP}, {(db, key): absolute expiry in ms}) for every key."""
    keys: dict[str, str] = {}
    expiries: dict[tuple[int, bytes], int] = {}
    with Resp(port, password) as r:
        info = r.call("INFO", "keyspace").decode()
        dbs = [int(line.split(":")[0][2:]) for line in info.splitlines() if line.startswith("db")]
        for db in dbs:
            r.call("SELECT", db)
            cursor = b"0"
            names: set[bytes] = set()
            while True:
                cursor, batch = r.call("SCAN", cursor, "COUNT", 500)
                names.update(batch)
                if cursor == b"0":
                    break
            for key in sorted(names):
                kind = r.call("TYPE", key)
                h = hashlib.sha256(kind + b"\0" + _value(r, kind, key) + b"\0" + r.call("DUMP", key))
                keys[f"{db}:{key!r}"] = h.hexdigest()
                expiry = r.call("PEXPIRETIME", key)
                if expiry >= 0:
                    expiries[(db, key)] = expiry
    return keys, expiries


def _value(r: Any, kind: bytes, key: bytes) -> bytes:
    if kind == b"string":
        return bytes(r.call("GET", key))
    if kind == b"list":
        return repr(r.call("LRANGE", key, 0, -1)).encode()
    if kind == b"set":
        return repr(sorted(r.call("SMEMBERS", key))).encode()
    if kind == b"zset":
        return repr(r.call("ZRANGE", key, 0, -1, "WITHSCORES")).encode()
    if kind == b"hash":
        flat = r.call("HGETALL", key)
        return repr(sorted(zip(flat[::2], flat[1::2], strict=True))).encode()
    if kind == b"stream":
        # Entries, consumer groups, their consumers and pending entries.
        return repr(r.call("XINFO", "STREAM", key, "FULL")).encode()
    raise AssertionError(f"key {key!r}: no digest for type {kind!r}")
