import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import type { Config } from './config.js'
import type { Db } from './db/schema.js'
import type { HousekeepingTable, Metrics } from './metrics.js'

/**
 * A denylisted access token's `jti` is kept this long past the token's `exp`: Tessera accepts
 * a few seconds of clock tolerance, and an instance's clock may be behind the database's.
 */
export const DENYLIST_SKEW_SECONDS = 300

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
  return { retentionSeconds: config.housekeepingRetentionSeconds, auditRetentionDays: config.auditRetentionDays, batchSize: config.housekeepingBatchSize }
}

const affected = (r: { numAffectedRows?: bigint }) => Number(r.numAffectedRows ?? 0n)

/**
 * One batch of dead families: up to `limit` families that expired or were revoked more than
 * `retentionSeconds` ago (database clock) are locked, skipping any that another instance
 * holds; up to `limit` of their refresh tokens are deleted, then those of them that have no
 * token left. A family with many tokens takes several batches, so no batch is ever large.
 * Tokens of live families are never touched: reuse detection needs used tokens until the
 * family itself is dead.
 */
export async function deleteDeadFamilies(db: Db, retentionSeconds: number, limit: number): Promise<{ families: number; tokens: number }> {
  return db.transaction().execute(async (trx) => {
    // Housekeeping gives way: should it wait on a row lock (a refresh of a long-dead family's
    // token at that instant), it gives up and retries next run. Shorter than PostgreSQL's
    // deadlock_timeout (1 s), so in a lock cycle it is always housekeeping that yields.
    await sql`set local lock_timeout = '200ms'`.execute(trx)
    // least() ignores nulls: the instant the family died, whichever came first
    // (index refresh_token_family_dead_idx, migration 0009).
    const { rows } = await sql<{ id: string }>`
      select id from refresh_token_family
       where least(expires_at, revoked_at) < now() - make_interval(secs => ${retentionSeconds})
       order by least(expires_at, revoked_at)
       limit ${limit}
         for update skip locked`.execute(trx)
    if (rows.length === 0) return { families: 0, tokens: 0 }
    const ids = rows.map((r) => r.id)
    const tokens = await sql`
      delete from refresh_token
       where id in (select id from refresh_token where family_id = any(${ids}::uuid[]) limit ${limit})`.execute(trx)
    const families = await sql`
      delete from refresh_token_family f
       where f.id = any(${ids}::uuid[])
         and not exists (select 1 from refresh_token t where t.family_id = f.id)`.execute(trx)
    return { families: affected(families), tokens: affected(tokens) }
  })
}

/** One batch of denylisted access-token ids whose token expired (plus the skew margin). */
export async function deleteExpiredDenylist(db: Db, limit: number): Promise<number> {
  const r = await sql`
    delete from revoked_access_token
     where jti in (select jti from revoked_access_token
                    where expires_at < now() - make_interval(secs => ${DENYLIST_SKEW_SECONDS})
                    order by expires_at limit ${limit}
                      for update skip locked)`.execute(db)
  return affected(r)
}

/** One batch of audit events older than `days` days. */
export async function deleteOldAuditEvents(db: Db, days: number, limit: number): Promise<number> {
  const r = await sql`
    delete from audit_event
     where id in (select id from audit_event
                   where at < now() - make_interval(days => ${days})
                   order by at limit ${limit}
                     for update skip locked)`.execute(db)
  return affected(r)
}

/**
 * Deletes dead rows, batch by batch, until nothing is left or the limits say stop. Safe on
 * every instance at once: batches lock their rows with SKIP LOCKED, so two instances never
 * wait on each other and never delete the same row; each batch is its own short transaction.
 */
export async function runHousekeeping(db: Db, settings: HousekeepingSettings, limits: RunLimits = {}): Promise<DeletedRows> {
  const deleted: DeletedRows = { refresh_token_family: 0, refresh_token: 0, revoked_access_token: 0, audit_event: 0 }
  const count = (table: HousekeepingTable, rows: number) => {
    if (rows === 0) return
    deleted[table] += rows
    limits.onDeleted?.(table, rows)
  }
  const n = settings.batchSize
  // Each task runs one batch and says how many rows it deleted (0 = nothing left).
  const tasks: (() => Promise<number>)[] = [
    async () => {
      const r = await deleteDeadFamilies(db, settings.retentionSeconds, n)
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
  if (settings.auditRetentionDays > 0) {
    tasks.push(async () => {
      const r = await deleteOldAuditEvents(db, settings.auditRetentionDays, n)
      count('audit_event', r)
      return r === n ? r : 0
    })
  }
  for (const task of tasks) {
    for (let batch = 0; limits.maxBatches === undefined || batch < limits.maxBatches; batch++) {
      if (limits.shouldStop?.()) return deleted
      if (batch > 0 && limits.pauseMs) await sleep(limits.pauseMs, undefined, { ref: false })
      if ((await task()) === 0) break
    }
  }
  return deleted
}

/** The logger housekeeping writes to (pino's shape). */
export interface HousekeepingLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

/**
 * The background job: every `HOUSEKEEPING_INTERVAL_SECONDS` (±20 % jitter, so a fleet started
 * together does not run in step), a bounded run. A failed run is logged and retried at the
 * next one; it never reaches the process. The timer does not keep the process alive.
 */
export class Housekeeper {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private stopped = false

  constructor(
    private readonly db: Db,
    private readonly config: Config,
    private readonly metrics: Metrics,
    private readonly log: HousekeepingLog,
  ) {}

  /** Schedules the runs; does nothing when the interval is 0. */
  start(): void {
    if (this.config.housekeepingIntervalSeconds === 0 || this.stopped) return
    // The first run comes after half to one interval: never in the middle of a start-up.
    this.schedule(0.5 + Math.random() * 0.5)
  }

  private schedule(factor: number): void {
    this.timer = setTimeout(() => {
      this.running = this.runOnce().finally(() => {
        this.running = undefined
        if (!this.stopped) this.schedule(0.8 + Math.random() * 0.4)
      })
    }, this.config.housekeepingIntervalSeconds * 1000 * factor)
    this.timer.unref()
  }

  /** One scheduled run (bounded, with pauses); logs one line when it deleted something. */
  async runOnce(): Promise<void> {
    const started = Date.now()
    try {
      const deleted = await runHousekeeping(this.db, housekeepingSettings(this.config), {
        maxBatches: MAX_BATCHES_PER_RUN,
        pauseMs: PAUSE_MS,
        shouldStop: () => this.stopped,
        onDeleted: (table, rows) => this.metrics.housekeepingDeletedRows(table, rows),
      })
      this.metrics.housekeepingRun('ok')
      if (Object.values(deleted).some((n) => n > 0)) this.log.info({ deleted, ms: Date.now() - started }, 'housekeeping')
    } catch (err) {
      this.metrics.housekeepingRun('error')
      const e = err as { message?: unknown; code?: unknown }
      this.log.warn({ err: { message: String(e?.message ?? err), code: e?.code } }, 'housekeeping failed; it runs again at the next interval')
    }
  }

  /** Stops the timer and waits for a run in progress to end (it stops after its current batch). */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.running
  }
}
