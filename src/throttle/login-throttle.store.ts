import { sql } from 'kysely'
import type { Executor, Trx } from '../db/schema.js'
import type { LoginThrottlePolicy } from '../config.js'

/** What a counter counts: one account, one address (IPv6 /64), or one account from one address. */
export type ThrottleKind = 'account' | 'address' | 'address_account'

/** One counter: `subject` is the normalised username, the address key, or `address|username`. */
export interface ThrottleKey {
  kind: ThrottleKind
  subject: string
}

/** A counter as an attempt left it. */
export interface ThrottleRow extends ThrottleKey {
  failures: number
  blockedUntil: Date | null
}

/** Free failures of each kind of counter. */
export function freeFailures(policy: LoginThrottlePolicy, kind: ThrottleKind): number {
  return kind === 'account' ? policy.accountFreeFailures : kind === 'address' ? policy.addressFreeFailures : policy.addressAccountFreeFailures
}

/**
 * Starts one password check (migration 0013, `tessera_login_attempt`): refused when a key is
 * locked, else counted as a failure on every key (taken back by `settleAttempt` on success).
 */
export async function loginAttempt(db: Executor, keys: readonly ThrottleKey[], nowMs: number, policy: LoginThrottlePolicy): Promise<{ refused: boolean; rows: ThrottleRow[] }> {
  const { rows } = await sql<{ kind: ThrottleKind; subject: string; failures: number; blocked_until: Date | null; refused: boolean }>`
    select * from tessera_login_attempt(
      ${keys.map((k) => k.kind)}::text[], ${keys.map((k) => k.subject)}::text[], ${keys.map((k) => freeFailures(policy, k.kind))}::int[],
      ${new Date(nowMs)}::timestamptz, ${policy.memorySeconds}::int, ${policy.backoffBaseSeconds}::int, ${policy.backoffMaxSeconds}::int)`.execute(db)
  return {
    refused: rows.some((r) => r.refused),
    rows: rows.map((r) => ({ kind: r.kind, subject: r.subject, failures: r.failures, blockedUntil: r.blocked_until })),
  }
}

const kindsOf = (keys: readonly ThrottleKey[]) => sql`${keys.map((k) => k.kind)}::text[]`
const subjectsOf = (keys: readonly ThrottleKey[]) => sql`${keys.map((k) => k.subject)}::text[]`

/**
 * Settles a counted attempt that was not a failure: the `reset` counters start again (a success
 * resets its account), the `takeBack` ones lose the attempt's count (and a lock it alone caused).
 * One statement: it locks the counters in key order, the order `tessera_login_attempt` takes them
 * in, and deletes or updates only the rows it locked. Separate statements took their rows each in
 * an order of their own, or a counter an attempt had created after the first one's snapshot: an
 * attempt holding that row while waiting for the address's deadlocked with the settlement holding
 * the address's (40P01, a 503 for one of the two logins). `reset` and `takeBack` are disjoint.
 */
export async function settleAttempt(db: Executor, reset: readonly ThrottleKey[], takeBack: readonly ThrottleKey[], policy: LoginThrottlePolicy): Promise<void> {
  const all = [...reset, ...takeBack]
  const free = sql`case t.kind when 'account' then ${policy.accountFreeFailures}::int when 'address' then ${policy.addressFreeFailures}::int else ${policy.addressAccountFreeFailures}::int end`
  await sql`
    with locked as materialized (
      select t.kind, t.subject from login_throttle t join unnest(${kindsOf(all)}, ${subjectsOf(all)}) as u(k, s) on t.kind = u.k and t.subject = u.s
      order by t.kind, t.subject for update of t
    ), reset as (
      delete from login_throttle t using locked l, unnest(${kindsOf(reset)}, ${subjectsOf(reset)}) as u(k, s)
      where t.kind = l.kind and t.subject = l.subject and t.kind = u.k and t.subject = u.s
    )
    update login_throttle t set failures = greatest(t.failures - 1, 0), blocked_until = case when t.failures - 1 > ${free} then t.blocked_until end
    from locked l, unnest(${kindsOf(takeBack)}, ${subjectsOf(takeBack)}) as u(k, s)
    where t.kind = l.kind and t.subject = l.subject and t.kind = u.k and t.subject = u.s`.execute(db)
}

/** A counter as operators see it. */
export interface ThrottleState extends ThrottleRow {
  lastFailureAt: Date
}

/** What an operator asks about: an account (normalised username) or an address key. */
export type ThrottleTarget = { account: string } | { address: string }

// An account's own counter and its per-address ones; an address's own and its per-account ones.
function targetFilter(target: ThrottleTarget) {
  return 'account' in target
    ? sql`(kind = 'account' and subject = ${target.account}) or (kind = 'address_account' and substr(subject, strpos(subject, '|') + 1) = ${target.account})`
    : sql`(kind = 'address' and subject = ${target.address}) or (kind = 'address_account' and split_part(subject, '|', 1) = ${target.address})`
}

/** The counters of an account or an address, most recent failure first. */
export async function throttleState(db: Executor, target: ThrottleTarget, limit = 1000): Promise<ThrottleState[]> {
  const { rows } = await sql<{ kind: ThrottleKind; subject: string; failures: number; blocked_until: Date | null; last_failure_at: Date }>`
    select kind, subject, failures, blocked_until, last_failure_at from login_throttle
    where ${targetFilter(target)} order by last_failure_at desc, kind, subject limit ${limit}`.execute(db)
  return rows.map((r) => ({ kind: r.kind, subject: r.subject, failures: r.failures, blockedUntil: r.blocked_until, lastFailureAt: r.last_failure_at }))
}

/** Deletes the counters of an account or an address (their locks end); how many there were. */
export async function deleteThrottle(trx: Trx, target: ThrottleTarget): Promise<number> {
  // Locked in key order (as attempts lock them), and only the rows locked are deleted (see `settleAttempt`).
  const result = await sql`
    with locked as materialized (select kind, subject from login_throttle where ${targetFilter(target)} order by kind, subject for update)
    delete from login_throttle t using locked l where t.kind = l.kind and t.subject = l.subject`.execute(trx)
  return Number(result.numAffectedRows ?? 0n)
}

/** Housekeeping: deletes up to `limit` counters quiet for `memorySeconds` and not locked (database clock). */
export async function deleteQuietThrottles(db: Executor, memorySeconds: number, limit: number): Promise<number> {
  const result = await sql`
    delete from login_throttle where (kind, subject) in (
      select kind, subject from login_throttle
      where greatest(last_failure_at, blocked_until) < now() - make_interval(secs => ${memorySeconds})
      limit ${limit} for update skip locked)`.execute(db)
  return Number(result.numAffectedRows ?? 0n)
}
