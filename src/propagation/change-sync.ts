import { setTimeout as sleep } from 'node:timers/promises'
import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import type { ClientCache } from '../clients/client-cache.js'
import type { Clock } from '../clock.js'
import type { Db } from '../db/schema.js'
import { Job, type JobDefinition, type JobDeps } from '../jobs.js'
import type { Keyring } from '../keys/keyring.js'
import { ChangeListener } from './change-listener.js'
import { changesSince, currentChangeVersion, deleteHeartbeat, pruneChanges, writeHeartbeat, type InstanceIdentity } from './changes.store.js'

/** How often each instance polls for changes and writes its heartbeat (ms). */
export const HEARTBEAT_INTERVAL_MS = 1000

/** Change events read in one go; more than this since the last run means a full reload instead. */
const MAX_EVENTS = 500

/** How often an instance prunes dead heartbeats and old change events (ms), and how old they must be. */
const PRUNE_EVERY_MS = 60_000
const PRUNE = { heartbeatSeconds: 3600, eventSeconds: 86_400 }

/** How often the LISTEN connection is checked for a silent death (ms). */
const LISTENER_CHECK_EVERY_MS = 10_000

export interface ChangeSyncOptions {
  readonly db: Db
  readonly keyring: Keyring
  readonly clients: ClientCache
  readonly clock: Clock
  readonly log: {
    info(obj: object, msg: string): void
    warn(obj: object, msg: string): void
  }
  readonly jobDeps: JobDeps
  /** The URL to LISTEN on; undefined = no LISTEN (the embedded database, or DATABASE_LISTEN_URL=off). */
  readonly listenUrl: string | undefined
}

/** How long start-up waits for the first LISTEN (ms). */
const LISTEN_START_WAIT_MS = 1000

/**
 * How an instance learns of changes made anywhere (docs/operations.md "Changes reach every instance"): the
 * `change_sync` job reads the change events committed after the version it last applied, applies
 * them (a key change reloads the keyring; a client change drops that client from the cache; users
 * are not cached: every check of a user reads the database), and writes the instance's heartbeat
 * with the versions it has applied. It runs every second (the poll) and at once on each NOTIFY.
 */
export class ChangeSync {
  readonly identity: InstanceIdentity = { instanceId: randomUUID(), host: hostname(), pid: process.pid }
  readonly job: Job
  private readonly listener: ChangeListener | undefined
  /** Every change up to this version is applied; undefined = nothing yet (a full load comes first). */
  private applied: number | undefined
  private reloadAll = true
  private wakeQueued = false
  private lastPruneMs: number
  private lastCheckMs: number
  private closed = false

  constructor(private readonly o: ChangeSyncOptions) {
    this.job = new Job(this.definition(), o.jobDeps)
    this.lastPruneMs = o.clock.nowMs()
    this.lastCheckMs = o.clock.nowMs()
    this.listener = o.listenUrl === undefined ? undefined : new ChangeListener({
      url: o.listenUrl,
      clock: o.clock,
      log: o.log,
      onNotify: () => this.wake(),
      onListening: (first) => {
        if (!first) this.reloadAll = true // notifications may have been missed
        this.wake()
      },
    })
  }

  /** The change version this instance has applied (undefined before its first run). */
  get appliedVersion(): number | undefined {
    return this.applied
  }

  /** Whether LISTEN is in place (false without one: the poll alone). */
  get listening(): boolean {
    return this.listener?.listening ?? false
  }

  /** LISTENs (one attempt; retried in the background), applies what is there, writes the first heartbeat, starts the timer. */
  async start(): Promise<void> {
    // The first LISTEN attempt is waited for a moment only: a listen address that does not answer
    // must not hold readiness up (the poll covers the gap; the listener keeps trying). Real time:
    // a network timeout.
    const listening = this.listener?.start()
    if (listening) await Promise.race([listening, sleep(LISTEN_START_WAIT_MS)])
    await this.job.run()
    this.job.start()
  }

  /**
   * Applies every change committed before this call, and reports it in the heartbeat: what the
   * admin API runs after a change, so that its own instance confirms at once. Never rejects.
   */
  applyNow(): Promise<void> {
    return this.job.run()
  }

  /** Stops the job and the listener, and removes the heartbeat (nobody should wait for a stopped instance). */
  async stop(): Promise<void> {
    this.closed = true
    await Promise.all([this.job.stop(), this.listener?.stop()])
    // Best effort: a database that is down cannot hold us up; the row goes stale by itself.
    await deleteHeartbeat(this.o.db, this.identity.instanceId).catch(() => undefined)
  }

  /** A notification: one more run, unless one is queued already (it will read this change too). */
  private wake(): void {
    if (this.wakeQueued || this.closed) return
    this.wakeQueued = true
    void this.job.run()
  }

  private definition(): JobDefinition {
    return {
      name: 'change_sync',
      delayMs: () => HEARTBEAT_INTERVAL_MS,
      failureMessage: 'change sync failed (changes made elsewhere may not be applied here yet); retrying every second',
      recoveryMessage: 'change sync works again',
      run: async (stopping) => {
        this.wakeQueued = false // a notification from now on needs a run after this one
        if (stopping()) return
        await this.sync()
        await writeHeartbeat(this.o.db, this.identity, { changeVersion: this.applied!, keySetVersion: this.o.keyring.version })
        await this.housekeeping()
      },
    }
  }

  /** Applies the changes after `applied`; a full reload when there is no reliable list of them. */
  private async sync(): Promise<void> {
    const { db, keyring, clients } = this.o
    if (this.applied === undefined || this.reloadAll) return this.fullReload()
    const events = await changesSince(db, this.applied, MAX_EVENTS)
    if (events.length === 0) return
    // Versions have no gaps; a gap means pruned events (this instance was away for long).
    if (events[0]!.version !== this.applied + 1 || events.length === MAX_EVENTS) return this.fullReload()
    let keys = false
    for (const e of events) {
      if (e.kind === 'client') clients.forget(e.subject)
      else if (e.kind === 'keys') keys = true
      // 'user': nothing cached; /userinfo, /introspect and the grants read the user's row.
    }
    // reload() resolves after a load that started after this call: it sees these changes.
    if (keys) await keyring.reload()
    this.applied = events[events.length - 1]!.version
  }

  private async fullReload(): Promise<void> {
    this.reloadAll = false
    // The version first: a change committed after it is applied again by the next run.
    const version = await currentChangeVersion(this.o.db).catch((err: unknown) => {
      this.reloadAll = true
      throw err
    })
    this.o.clients.clear()
    try {
      await this.o.keyring.reload()
    } catch (err) {
      this.reloadAll = true
      throw err
    }
    this.applied = version
  }

  /** Now and then: prune dead heartbeats and old events, and check the LISTEN connection. */
  private async housekeeping(): Promise<void> {
    const now = this.o.clock.nowMs()
    if (this.listener && now - this.lastCheckMs >= LISTENER_CHECK_EVERY_MS) {
      this.lastCheckMs = now
      void this.listener.check()
    }
    if (now - this.lastPruneMs >= PRUNE_EVERY_MS) {
      this.lastPruneMs = now
      await pruneChanges(this.o.db, PRUNE)
    }
  }
}
