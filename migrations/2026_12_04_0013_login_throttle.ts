import { sql, type Kysely } from 'kysely'

// Brute-force protection (docs/security.md "Brute force and abuse"): failure counters of password checks,
// shared by every instance, keyed by account (the normalised username as submitted, existing or
// not), by client address (IPv6 by /64) and by both. Per-client /token rate limits get a column.
/**
 * `tessera_login_attempt` as this migration made it (migration 0023 replaces it, and puts it back
 * in its `down`).
 */
export const loginAttemptFunction = sql`
  create or replace function tessera_login_attempt(
    p_kinds text[], p_subjects text[], p_free int[], p_now timestamptz,
    p_memory_seconds int, p_base_seconds int, p_max_seconds int
  ) returns table (kind text, subject text, failures int, blocked_until timestamptz, refused boolean)
  language plpgsql as $$
  #variable_conflict use_column
  declare
    v_until timestamptz;
  begin
    -- The common case under attack: a key is locked. Answer without writing anything.
    select max(t.blocked_until) into v_until
      from login_throttle t join unnest(p_kinds, p_subjects) as u(k, s) on t.kind = u.k and t.subject = u.s
      where t.blocked_until > p_now;
    if v_until is null then
      insert into login_throttle as t (kind, subject, failures, last_failure_at)
        select u.k, u.s, 0, p_now from unnest(p_kinds, p_subjects) as u(k, s) order by u.k, u.s
        on conflict on constraint login_throttle_pkey do nothing;
      perform 1 from login_throttle t join unnest(p_kinds, p_subjects) as u(k, s) on t.kind = u.k and t.subject = u.s
        order by t.kind, t.subject for update of t;
      -- Under the row locks: another attempt may have locked a key since the first look.
      select max(t.blocked_until) into v_until
        from login_throttle t join unnest(p_kinds, p_subjects) as u(k, s) on t.kind = u.k and t.subject = u.s
        where t.blocked_until > p_now;
    end if;
    if v_until is not null then
      return query select t.kind, t.subject, t.failures, t.blocked_until, true
        from login_throttle t join unnest(p_kinds, p_subjects) as u(k, s) on t.kind = u.k and t.subject = u.s;
      return;
    end if;
    return query
      update login_throttle t set
        failures = x.n,
        last_failure_at = p_now,
        blocked_until = case when x.n > x.f
          then p_now + make_interval(secs => least(p_max_seconds::float8, p_base_seconds * power(2::float8, least(x.n - x.f - 1, 40))))
          else null end
      from (
        select t2.kind, t2.subject, u.f,
          case when t2.last_failure_at <= p_now - make_interval(secs => p_memory_seconds) then 1 else t2.failures + 1 end as n
        from login_throttle t2 join unnest(p_kinds, p_subjects, p_free) as u(k, s, f) on t2.kind = u.k and t2.subject = u.s
      ) x
      where t.kind = x.kind and t.subject = x.subject
      returning t.kind, t.subject, t.failures, t.blocked_until, false;
  end
  $$`

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('login_throttle')
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('account', 'address', 'address_account')`))
    .addColumn('subject', 'text', (c) => c.notNull())
    // Attempts counted as failures since the counter last started (an attempt counts when it
    // starts, before its hash; a success takes its own count back).
    .addColumn('failures', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_failure_at', 'timestamptz', (c) => c.notNull())
    // Attempts are refused until then (exponential backoff); null = not locked.
    .addColumn('blocked_until', 'timestamptz')
    .addPrimaryKeyConstraint('login_throttle_pkey', ['kind', 'subject'])
    .execute()
  // Housekeeping deletes counters that have been quiet for their memory and are not locked.
  await sql`create index login_throttle_quiet on login_throttle (greatest(last_failure_at, blocked_until))`.execute(db)

  // One attempt, in one round trip: refused (and nothing counted) when any of its keys is locked;
  // otherwise each key counts one failure (forgotten first if quiet for p_memory_seconds), and a
  // key past its free failures is locked for p_base_seconds · 2^(failures − free − 1), at most
  // p_max_seconds. Rows are locked in key order, so concurrent attempts on other instances queue
  // behind each other and N instances allow exactly as many attempts as one.
  await loginAttemptFunction.execute(db)

  // Requests per second a client may make at /token on each instance; null = the configured default, 0 = no limit.
  await db.schema.alterTable('client').addColumn('rate_limit_per_second', 'integer', (c) => c.check(sql`rate_limit_per_second >= 0`)).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('client').dropColumn('rate_limit_per_second').execute()
  await sql`drop function if exists tessera_login_attempt(text[], text[], int[], timestamptz, int, int, int)`.execute(db)
  await db.schema.dropTable('login_throttle').execute()
}
