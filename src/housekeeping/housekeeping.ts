import { setTimeout as sleep } from 'node:timers/promises'
import type { Clock } from '../clock.js'
import type { Config } from '../config.js'
import type { Db } from '../db/schema.js'
import type { JobDefinition } from '../jobs.js'
import type { HousekeepingTable, Metrics } from '../metrics.js'
import { deleteExpiredIdempotencyKeys } from '../admin/idempotency.store.js'
import { deleteQuietThrottles } from '../throttle/login-throttle.store.js'
import { deleteDeadFamilies, deleteDeadSsoSessions, deleteExpiredAuthorizationCodes, deleteExpiredAuthorizationRequests, deleteExpiredDenylist, deleteOldAuditEvents } from './housekeeping.store.js'

export { DENYLIST_SKEW_SECONDS } from './housekeeping.store.js'

/** Batches per table in one scheduled run; the rest waits for the next run. */
export const MAX_BATCHES_PER_RUN = 20

/** Pause between two batches of a scheduled run, so housekeeping never floods the database. */
export const PAUSE_MS = 100

/** What to delete. */
export interface HousekeepingSettings {
  /** Dead families are kept this long after they expired or were revoked. */
  retentionSeconds: number
  /** Audit events older than this many days go; 0 = kept forever. */
  auditRetentionDays: number
  /** At most this many rows per table in one batch (one short transaction). */
  batchSize: number
  /** Password-check counters quiet (and unlocked) this long go (LOGIN_FAILURE_MEMORY_SECONDS). */
  throttleMemorySeconds?: number | undefined
}

/** How long one run may go on. */
export interface RunLimits {
  /** Batches per table; undefined = until nothing is left. */
  maxBatches?: number | undefined
  /** Pause between batches. */
  pauseMs?: number | undefined
  /** Checked before every batch: stop early (the app is closing). */
  shouldStop?: (() => boolean) | undefined
  /** Called after every batch that deleted rows, once its transaction committed. */
  onDeleted?: ((table: HousekeepingTable, rows: number) => void) | undefined
}

export type DeletedRows = Record<HousekeepingTable, number>

/** The housekeeping settings from the configuration. */
export function housekeepingSettings(config: Config): HousekeepingSettings {
  return { retentionSeconds: config.housekeepingRetentionSeconds, auditRetentionDays: config.auditRetentionDays, batchSize: config.housekeepingBatchSize, throttleMemorySeconds: config.loginThrottle.memorySeconds }
}

/**
 * Deletes dead rows, batch by batch, until nothing is left or the limits say stop. Safe on
 * every instance at once: batches lock their rows with SKIP LOCKED, so two instances never
 * wait on each other and never delete the same row; each batch is its own short transaction.
 */
export async function runHousekeeping(db: Db, settings: HousekeepingSettings, limits: RunLimits = {}): Promise<DeletedRows> {
  const deleted: DeletedRows = { refresh_token_family: 0, refresh_token: 0, revoked_access_token: 0, audit_event: 0, login_throttle: 0, authorization_request: 0, authorization_code: 0, sso_session: 0, idempotency_key: 0 }
  const count = (table: HousekeepingTable, rows: number) => {
    if (rows === 0) return
    deleted[table] += rows
    limits.onDeleted?.(table, rows)
  }
  const n = settings.batchSize
  // Each task runs one batch and says how many rows it deleted (0 = nothing left).
  const tasks: (() => Promise<number>)[] = [
    async () => {
      const r = await db.transaction().execute((trx) => deleteDeadFamilies(trx, settings.retentionSeconds, n))
      count('refresh_token', r.tokens)
      count('refresh_token_family', r.families)
      return r.tokens + r.families
    },
    async () => {
      const r = await deleteExpiredDenylist(db, n)
      count('revoked_access_token', r)
      return r === n ? r : 0 // a short batch took the last ones
    },
  ]
  // --- authorization-code flow (issue 13): requests, codes and SSO sessions past their life.
  const batch = (table: HousekeepingTable, run: () => Promise<number>) => async () => {
    const r = await run()
    count(table, r)
    return r === n ? r : 0
  }
  tasks.push(
    batch('authorization_request', () => deleteExpiredAuthorizationRequests(db, n)),
    batch('authorization_code', () => deleteExpiredAuthorizationCodes(db, settings.retentionSeconds, n)),
    batch('sso_session', () => deleteDeadSsoSessions(db, settings.retentionSeconds, n)),
  )
  // ---
  // Admin API (issue 14): Idempotency-Keys older than 24 h.
  tasks.push(batch('idempotency_key', () => deleteExpiredIdempotencyKeys(db, n)))
  if (settings.auditRetentionDays > 0) {
    tasks.push(async () => {
      const r = await deleteOldAuditEvents(db, settings.auditRetentionDays, n)
      count('audit_event', r)
      return r === n ? r : 0
    })
  }
  const memory = settings.throttleMemorySeconds
  if (memory !== undefined) {
    tasks.push(async () => {
      const r = await deleteQuietThrottles(db, memory, n)
      count('login_throttle', r)
      return r === n ? r : 0
    })
  }
  for (const task of tasks) {
    for (let batch = 0; limits.maxBatches === undefined || batch < limits.maxBatches; batch++) {
      if (limits.shouldStop?.()) return deleted
      // A throttle for the database's sake, not a time decision: real milliseconds, not the clock.
      if (batch > 0 && limits.pauseMs) await sleep(limits.pauseMs, undefined, { ref: false })
      if ((await task()) === 0) break
    }
  }
  return deleted
}

/**
 * The background job: every `HOUSEKEEPING_INTERVAL_SECONDS` (±20 % jitter, so a fleet started
 * together does not run in step; the first run after half to one interval, never in the middle of
 * a start-up), a bounded run with pauses; one log line when it deleted something.
 */
export function housekeepingJob(db: Db, config: Config, metrics: Metrics, clock: Clock, log: { info(obj: object, msg: string): void }): JobDefinition {
  const intervalMs = config.housekeepingIntervalSeconds * 1000
  return {
    name: 'housekeeping',
    delayMs: (first) => (intervalMs === 0 ? undefined : intervalMs * (first ? 0.5 + Math.random() * 0.5 : 0.8 + Math.random() * 0.4)),
    failureMessage: 'housekeeping failed; it runs again at the next interval',
    recoveryMessage: 'housekeeping works again',
    async run(stopping) {
      const started = clock.nowMs()
      const deleted = await runHousekeeping(db, housekeepingSettings(config), {
        maxBatches: MAX_BATCHES_PER_RUN,
        pauseMs: PAUSE_MS,
        shouldStop: stopping,
        onDeleted: (table, rows) => metrics.housekeepingDeletedRows(table, rows),
      })
      if (Object.values(deleted).some((n) => n > 0)) log.info({ deleted, ms: clock.nowMs() - started }, 'housekeeping')
    },
  }
}
