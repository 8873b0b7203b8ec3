import { sql } from 'kysely'
import type { Executor } from '../db/schema.js'

// SQL of change propagation (migration 0012): the change version, the change events that
// triggers record, and the instances' heartbeats. The writes of changes themselves are triggers:
// no use case records a change by hand.

export type ChangeKind = 'keys' | 'client' | 'user'

/** One change: a signing key (subject = kid), a client (its id) or a user (its id). */
export interface ChangeEvent {
  readonly version: number
  readonly kind: ChangeKind
  readonly subject: string
}

/** The version of the newest committed change (0: none yet). */
export async function currentChangeVersion(db: Executor): Promise<number> {
  const row = await db.selectFrom('change_version').select(sql<string>`version::text`.as('v')).executeTakeFirstOrThrow()
  return Number(row.v)
}

/** Committed changes after `version`, oldest first, at most `limit`. */
export async function changesSince(db: Executor, version: number, limit: number): Promise<ChangeEvent[]> {
  const rows = await db
    .selectFrom('change_event')
    .select([sql<string>`version::text`.as('v'), 'kind', 'subject'])
    .where(sql<boolean>`version > ${version}`)
    .orderBy('version')
    .limit(limit)
    .execute()
  return rows.map((r) => ({ version: Number(r.v), kind: r.kind, subject: r.subject }))
}

/** Who an instance is. */
export interface InstanceIdentity {
  readonly instanceId: string
  readonly host: string
  readonly pid: number
}

/**
 * Writes an instance's heartbeat (the database's `now()`) and what it has applied; `applied_at`
 * moves only when the change version does.
 */
export async function writeHeartbeat(db: Executor, who: InstanceIdentity, applied: { changeVersion: number; keySetVersion: string }): Promise<void> {
  await db
    .insertInto('instance_heartbeat')
    .values({ instance_id: who.instanceId, host: who.host, pid: who.pid, change_version: String(applied.changeVersion), key_set_version: applied.keySetVersion })
    .onConflict((oc) =>
      oc.column('instance_id').doUpdateSet({
        heartbeat_at: sql`now()`,
        change_version: (eb) => eb.ref('excluded.change_version'),
        key_set_version: (eb) => eb.ref('excluded.key_set_version'),
        applied_at: sql`case when instance_heartbeat.change_version = excluded.change_version then instance_heartbeat.applied_at else now() end`,
      }),
    )
    .execute()
}

/** Removes an instance's heartbeat (it shuts down: nobody should wait for it). */
export async function deleteHeartbeat(db: Executor, instanceId: string): Promise<void> {
  await db.deleteFrom('instance_heartbeat').where('instance_id', '=', instanceId).execute()
}

/** One instance's heartbeat as a waiting command sees it. */
export interface InstanceStatus {
  readonly instanceId: string
  readonly host: string
  readonly pid: number
  readonly changeVersion: number
  /** Its heartbeat is at most `staleSeconds` old (the database's clock). */
  readonly live: boolean
}

/** Every heartbeat row, with whether it is live. */
export async function instanceStatuses(db: Executor, staleSeconds: number): Promise<InstanceStatus[]> {
  const rows = await db
    .selectFrom('instance_heartbeat')
    .select(['instance_id', 'host', 'pid', sql<string>`change_version::text`.as('v'), sql<boolean>`heartbeat_at > now() - make_interval(secs => ${staleSeconds})`.as('live')])
    .orderBy('started_at')
    .orderBy('instance_id')
    .execute()
  return rows.map((r) => ({ instanceId: r.instance_id, host: r.host, pid: r.pid, changeVersion: Number(r.v), live: r.live }))
}

/**
 * Deletes heartbeats silent for `heartbeatSeconds` (instances that died without saying so) and
 * change events older than `eventSeconds` (an instance that far behind reloads everything).
 */
export async function pruneChanges(db: Executor, o: { heartbeatSeconds: number; eventSeconds: number }): Promise<void> {
  await db.deleteFrom('instance_heartbeat').where(sql<boolean>`heartbeat_at < now() - make_interval(secs => ${o.heartbeatSeconds})`).execute()
  await db.deleteFrom('change_event').where(sql<boolean>`at < now() - make_interval(secs => ${o.eventSeconds})`).execute()
}
