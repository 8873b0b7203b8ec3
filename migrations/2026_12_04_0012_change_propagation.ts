import { sql, type Kysely } from 'kysely'

/**
 * Change propagation (docs/operations.md "Changes reach every instance"): every change that instances cache
 * (a signing key, a client, a user's disabled state) is recorded by a trigger, in the changing
 * transaction (deferred to its commit), as
 *   - one bump of `change_version.version` per transaction (the single row's lock orders the
 *     bumps as the commits: a transaction that sees version N committed sees every change <= N);
 *   - a `change_event` row (version, kind, subject) per changed key, client or user;
 *   - a `NOTIFY tessera_change` with `{"version": N, "kind": …, "id": …}`, which PostgreSQL
 *     delivers at commit. The payload carries ids and versions only, never key material.
 * Instances LISTEN (or poll, the fallback), apply the events after the version they last applied,
 * and report it in `instance_heartbeat`; commands wait until every live instance reports theirs.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table change_version (
      id boolean primary key default true check (id),
      version bigint not null,
      -- the transaction that made the last bump: a transaction bumps once however many rows it changes
      xact bigint
    )`.execute(db)
  await sql`insert into change_version (version) values (0)`.execute(db)
  await sql`
    create table change_event (
      version bigint not null,
      kind text not null check (kind in ('keys', 'client', 'user')),
      subject text not null,
      at timestamptz not null default now(),
      primary key (version, kind, subject)
    )`.execute(db)
  await sql`create index change_event_at on change_event (at)`.execute(db)
  await sql`
    create table instance_heartbeat (
      instance_id uuid primary key,
      host text not null,
      pid integer not null,
      started_at timestamptz not null default now(),
      heartbeat_at timestamptz not null default now(),
      -- what the instance has applied: every change up to this version, and this key set
      change_version bigint not null,
      key_set_version text not null,
      applied_at timestamptz not null default now()
    )`.execute(db)

  await sql`
    create function tessera_record_change(p_kind text, p_subject text) returns void
    language plpgsql as $$
    declare
      v bigint;
    begin
      update change_version set version = version + 1, xact = txid_current()
        where xact is distinct from txid_current()
        returning version into v;
      if v is null then
        select version into v from change_version; -- bumped earlier in this transaction
      end if;
      insert into change_event (version, kind, subject) values (v, p_kind, p_subject) on conflict do nothing;
      perform pg_notify('tessera_change', json_build_object('version', v, 'kind', p_kind, 'id', p_subject)::text);
    end $$`.execute(db)

  // One trigger function for every table: TG_ARGV[0] is the kind, TG_ARGV[1] the column naming the row.
  await sql`
    create function tessera_row_changed() returns trigger language plpgsql as $$
    begin
      perform tessera_record_change(tg_argv[0], (case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end) ->> tg_argv[1]);
      return null;
    end $$`.execute(db)

  // Deferred to the commit: the change_version row is locked only for the moment of the commit, not
  // while the rest of the transaction runs (a client disable revoking many families, say).
  await sql`create constraint trigger signing_key_changed after insert or update or delete on signing_key deferrable initially deferred for each row execute function tessera_row_changed('keys', 'kid')`.execute(db)
  // A new client too: an instance may have cached "no such client" for its id.
  await sql`create constraint trigger client_changed after insert or update or delete on client deferrable initially deferred for each row execute function tessera_row_changed('client', 'id')`.execute(db)
  // Only what an instance could hold about a user; a password rehash at login bumps nothing.
  await sql`
    create constraint trigger app_user_changed after update on app_user deferrable initially deferred for each row
    when (old.disabled_at is distinct from new.disabled_at or old.roles is distinct from new.roles or old.username is distinct from new.username)
    execute function tessera_row_changed('user', 'id')`.execute(db)
  await sql`create constraint trigger app_user_deleted after delete on app_user deferrable initially deferred for each row execute function tessera_row_changed('user', 'id')`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists app_user_deleted on app_user`.execute(db)
  await sql`drop trigger if exists app_user_changed on app_user`.execute(db)
  await sql`drop trigger if exists client_changed on client`.execute(db)
  await sql`drop trigger if exists signing_key_changed on signing_key`.execute(db)
  await sql`drop function if exists tessera_row_changed()`.execute(db)
  await sql`drop function if exists tessera_record_change(text, text)`.execute(db)
  await sql`drop table if exists instance_heartbeat`.execute(db)
  await sql`drop table if exists change_event`.execute(db)
  await sql`drop table if exists change_version`.execute(db)
}
