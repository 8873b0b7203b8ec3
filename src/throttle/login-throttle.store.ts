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

const keyList = (keys: readonly ThrottleKey[]) => sql.join(keys.map((k) => sql`(${k.kind}, ${k.subject})`))

/**
 * Settles a counted attempt that was not a failure: the `reset` counters start again (a success
 * resets its account), the `takeBack` ones lose the attempt's count (and a lock it alone caused).
 * In a transaction that first locks every row in key order, the order `tessera_login_attempt`
 * locks them in: without it the DELETE and the UPDATE take their rows in an order of their own, and
 * a concurrent attempt on the same account holding the first row while waiting for the second
 * deadlocks with it (40P01, a 503 for one of the two logins).
 */
export async function settleAttempt(trx: Trx, reset: readonly ThrottleKey[], takeBack: readonly ThrottleKey[], policy: LoginThrottlePolicy): Promise<void> {
  await lockInKeyOrder(trx, sql`(kind, subject) in (${keyList([...reset, ...takeBack])})`)
  if (reset.length > 0) await sql`delete from login_throttle where (kind, subject) in (${keyList(reset)})`.execute(trx)
  if (takeBack.length === 0) return
  const free = sql`case kind when 'account' then ${policy.accountFreeFailures}::int when 'address' then ${policy.addressFreeFailures}::int else ${policy.addressAccountFreeFailures}::int end`
  await sql`update login_throttle set failures = greatest(failures - 1, 0), blocked_until = case when failures - 1 > ${free} then blocked_until end where (kind, subject) in (${keyList(takeBack)})`.execute(trx)
}

/** Row locks on the counters `where` selects, taken in key order (see `settleAttempt`). */
async function lockInKeyOrder(trx: Trx, where: ReturnType<typeof sql>): Promise<void> {
  await sql`select 1 from login_throttle where ${where} order by kind, subject for update`.execute(trx)
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
  await lockInKeyOrder(trx, targetFilter(target))
  const result = await sql`delete from login_throttle where ${targetFilter(target)}`.execute(trx)
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
