import { setTimeout as sleep } from 'node:timers/promises'
import type { Clock } from '../clock.js'
import type { Executor } from '../db/schema.js'
import { currentChangeVersion, instanceStatuses, type InstanceStatus } from './changes.store.js'

/** How often a waiting command reads the heartbeats (ms): a throttle for the database, in real time. */
export const PROPAGATION_POLL_MS = 20

export interface AwaitOptions {
  readonly clock: Clock
  /** Wait at most this long (PROPAGATION_WAIT_SECONDS; 0 = look once, do not wait). */
  readonly waitSeconds: number
  /** An instance whose heartbeat is older than this is gone: nobody waits for it (INSTANCE_STALE_SECONDS). */
  readonly staleSeconds: number
  readonly pollMs?: number
}

/** One instance in a propagation report. */
export interface InstanceRef {
  readonly instance: string
  readonly host: string
  readonly pid: number
  /** The change version it had applied when the wait ended. */
  readonly change_version: number
}

/** The `propagation` member of a command's JSON (docs/operations.md "Changes reach every instance"). */
export interface PropagationReport {
  /** The change version every instance had to reach (the newest one when the wait began). */
  readonly version: number
  readonly confirmed: InstanceRef[]
  /** Live instances (or instances that were live when the wait began) that did not reach it. */
  readonly unconfirmed: InstanceRef[]
  /**
   * Instances whose heartbeat was already stale (older than INSTANCE_STALE_SECONDS) for the whole
   * wait and that had not reached the version: frozen, partitioned, or dead without a clean stop
   * (their rows are pruned after an hour). Not waited for, but never silently left out.
   */
  readonly stale: InstanceRef[]
  readonly waited_ms: number
  /** Present when the heartbeats could not be read at all (the change itself is committed). */
  readonly error?: string
}

const ref = (s: InstanceStatus): InstanceRef => ({ instance: s.instanceId, host: s.host, pid: s.pid, change_version: s.changeVersion })

/**
 * Waits until every live instance has applied every change committed so far — call it right
 * after the change committed —, or until `waitSeconds` have passed. The instances waited for are
 * those live at any poll of the wait: one that goes silent meanwhile (frozen, dead) stays in the
 * report as unconfirmed; one that stopped cleanly (its heartbeat row deleted) serves nothing and
 * is left out. Never throws: a database error ends the wait with `error` set.
 */
export async function awaitPropagation(db: Executor, o: AwaitOptions): Promise<PropagationReport> {
  const started = o.clock.nowMs()
  const waited = () => Math.max(0, Math.round(o.clock.nowMs() - started))
  let version: number
  try {
    version = await currentChangeVersion(db)
  } catch {
    return { version: 0, confirmed: [], unconfirmed: [], stale: [], waited_ms: waited(), error: 'could not read the change version' }
  }
  const watched = new Set<string>()
  let last: InstanceStatus[] | undefined
  let stale: InstanceStatus[] = []
  for (;;) {
    try {
      const statuses = await instanceStatuses(db, o.staleSeconds)
      for (const s of statuses) if (s.live) watched.add(s.instanceId)
      last = statuses.filter((s) => watched.has(s.instanceId))
      stale = statuses.filter((s) => !watched.has(s.instanceId) && s.changeVersion < version)
    } catch {
      // Keep the last answer; the deadline bounds the wait.
    }
    const done = last !== undefined && last.every((s) => s.changeVersion >= version)
    if (done || o.clock.nowMs() - started >= o.waitSeconds * 1000) break
    await sleep(o.pollMs ?? PROPAGATION_POLL_MS)
  }
  if (last === undefined) return { version, confirmed: [], unconfirmed: [], stale: [], waited_ms: waited(), error: 'could not read the instance heartbeats' }
  return {
    version,
    confirmed: last.filter((s) => s.changeVersion >= version).map(ref),
    unconfirmed: last.filter((s) => s.changeVersion < version).map(ref),
    stale: stale.map(ref),
    waited_ms: waited(),
  }
}
