"""Generated content for the stores: the shapes a platform's data has, at any size."""

from __future__ import annotations

from typing import Any

# Awkward names: a newline, spaces and non-ASCII, in a schema, a table, a column and a key.
ODD_SCHEMA = "team data é"
ODD_TABLE = "line\nbreak table ü"


def postgres_sql(rows: int) -> str:
    """Schemas, an enum, sequences, jsonb, bytea, large objects, a view, triggers and foreign keys."""
    small = max(rows // 20, 1)
    return f"""
create schema app;
create schema billing;
create schema "{ODD_SCHEMA}";
create type app.plan as enum ('free', 'pro', 'enterprise');
create sequence billing.invoice_no start 1000 increment 7;
create table app.users (
  id bigint generated always as identity primary key,
  email text not null unique,
  plan app.plan not null default 'free',
  profile jsonb not null default '{{}}',
  avatar bytea,
  created_at timestamptz not null default '2026-01-01T00:00:00Z',
  updated_at timestamptz
);
create table app.sessions (
  token uuid primary key,
  user_id bigint not null references app.users (id) on delete cascade,
  expires_at timestamptz not null
);
create table billing.invoices (
  no bigint primary key default nextval('billing.invoice_no'),
  user_id bigint not null references app.users (id),
  amount numeric(12, 2) not null check (amount >= 0),
  lines jsonb not null,
  receipt oid
);
create table billing.audit (id bigserial primary key, invoice bigint not null, note text not null);
create table "{ODD_SCHEMA}"."{ODD_TABLE}" ("col ü\nnext" text primary key, n int);
create table app.no_key (a int, b text);
create function app.touch() returns trigger language plpgsql as $$
begin new.updated_at := '2026-02-02T00:00:00Z'; return new; end $$;
create trigger users_touch before update on app.users for each row execute function app.touch();
create function billing.log_invoice() returns trigger language plpgsql as $$
begin insert into billing.audit (invoice, note) values (new.no, 'created'); return new; end $$;
create trigger invoices_audit after insert on billing.invoices for each row execute function billing.log_invoice();
create view billing.revenue as
  select u.plan, count(*) as invoices, sum(i.amount) as total
  from billing.invoices i join app.users u on u.id = i.user_id group by u.plan;

insert into app.users (email, plan, profile, avatar)
  select 'user' || g || '@example.com', (array['free', 'pro', 'enterprise'])[1 + g % 3]::app.plan,
         jsonb_build_object('name', 'User ' || g, 'tags', jsonb_build_array(g % 7, 'ä\nß'), 'score', g * 1.5),
         case when g % 5 = 0 then decode(md5(g::text) || md5((g * 3)::text), 'hex') end
  from generate_series(1, {rows}) g;
update app.users set plan = 'pro' where id % 97 = 0;
insert into app.sessions
  select md5('s' || g)::uuid, 1 + g % {rows}, '2026-03-01T00:00:00Z'::timestamptz + g * interval '1 minute'
  from generate_series(1, {rows}) g;
insert into billing.invoices (user_id, amount, lines)
  select 1 + g % {rows}, (g % 1000) * 1.25,
         jsonb_build_array(jsonb_build_object('sku', 'gpu-hour', 'qty', g % 13),
                           jsonb_build_object('note', E'tab\\there'))
  from generate_series(1, {rows}) g;
update billing.invoices set receipt = lo_from_bytea(0, convert_to(repeat('receipt ' || no, 50), 'UTF8'))
  where no % {max(rows // 10, 1) * 7} = 0;
insert into "{ODD_SCHEMA}"."{ODD_TABLE}" select 'k' || g || E'\\n' || 'é', g from generate_series(1, {small}) g;
insert into app.no_key select g % 10, 'dup' from generate_series(1, {small}) g;
select setval('billing.invoice_no', (select max(no) from billing.invoices) + 700);
"""


# The table a writer appends to while a backup runs, and the counter it keeps in step.
WRITER_SQL = """
create table app.ticks (id bigserial primary key, at timestamptz not null default clock_timestamp());
create table app.counter (n bigint not null);
insert into app.counter values (0);
"""
WRITE_ONE = (
    "with t as (insert into app.ticks default values returning id)"
    " update app.counter set n = n + (select count(*) from t);\n"
)


def redis_load(r: Any, keys: int) -> None:
    """Every type, TTLs, several databases, a stream with consumer groups and pending entries."""
    for i in range(keys):
        r.call("SET", f"session:{i}", f"payload-{i}" * 3)
    r.call("SET", b"odd key\nwith newline", b"v1")
    r.call("SET", "clé é ü", b"\x00\xff binary \r\n value")
    r.call("SET", b"\xff\xfe not utf-8", b"v2")
    r.call("SET", "ttl:short-lived", "x", "EX", 3600)
    r.call("HSET", "user:1", "name", "Ada", "plan", "pro", "tags", "a\nb")
    r.call("RPUSH", "queue:jobs", *[f"job-{i}" for i in range(50)])
    r.call("SADD", "set:ids", *range(40))
    r.call("SADD", "set:words", "alpha", "beta", "gamma é")
    r.call("ZADD", "rank", 1.5, "a", 2.25, "b", -3, "c")
    r.call("PEXPIRE", "user:1", 7_200_000)
    for i in range(30):
        r.call("XADD", "events", "*", "kind", "signup", "n", i)
    r.call("XGROUP", "CREATE", "events", "mailer", "0")
    r.call("XGROUP", "CREATE", "events", "audit", "$")
    r.call("XREADGROUP", "GROUP", "mailer", "worker-1", "COUNT", 5, "STREAMS", "events", ">")
    r.call("XREADGROUP", "GROUP", "mailer", "worker-2", "COUNT", 3, "STREAMS", "events", ">")
    r.call("SELECT", 3)
    for i in range(max(keys // 10, 1)):
        r.call("SET", f"cache:{i}", i)
    r.call("SELECT", 0)
