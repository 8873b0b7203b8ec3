import { sql, type Kysely } from 'kysely'
import { loginAttemptFunction } from './2026_12_04_0013_login_throttle.js'

// `tessera_login_attempt` (migration 0013) without a lock taken out of key order. It used to insert
// missing counters (ON CONFLICT DO NOTHING) and then lock them with a SELECT ... FOR UPDATE. A
// success deletes its account's counters: when that happened between the two statements, the
// SELECT found nothing to lock, and the final UPDATE, with a snapshot of its own, then locked the
// counter another attempt had meanwhile created, after the address's. Two such attempts, each
// holding what the other waited for, deadlocked: 40P01, a 503 for one of the logins (one login in
// two at 30 concurrent logins of one account). Now a single INSERT ... ON CONFLICT DO UPDATE
// creates or locks every counter, in key order, and a counter deleted meanwhile is created again
// within the same statement: when it returns, all of them are held, so the rest of the function
// waits for nobody.
const lockingAttempt = sql`
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
      -- Create or lock every counter, in key order, in one statement.
      insert into login_throttle as t (kind, subject, failures, last_failure_at)
        select distinct u.k, u.s, 0, p_now from unnest(p_kinds, p_subjects) as u(k, s) order by u.k, u.s
        on conflict on constraint login_throttle_pkey do update set failures = t.failures;
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
  await lockingAttempt.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await loginAttemptFunction.execute(db)
}
