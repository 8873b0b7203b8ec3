import type { Clock } from '../clock.js'
import type { Db } from '../db/schema.js'
import type { JobDefinition } from '../jobs.js'
import type { Keyring } from './keyring.js'
import { keySetVersion } from './keys.store.js'
import { changed, runKeySchedule } from './lifecycle.js'

export interface KeySyncOptions {
  readonly db: Db
  readonly keyring: Keyring
  readonly clock: Clock
  readonly log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void }
  /** A full reload at least this often, whatever the change poll says. */
  readonly refreshSeconds: number
  /** How often the change poll and the schedule check run (ms); 1000 by default. */
  readonly tickMs?: number
  /** Whether this instance runs the schedule (default true; every instance may, safely). */
  readonly schedule?: boolean
}

/**
 * The key-sync job of every instance: a one-row query each tick notices any change made by any
 * instance or command (each change bumps a version sequence) and reloads the keyring; a full
 * reload also runs every `refreshSeconds`. The same tick runs the key schedule when something is
 * due (activation, removal, publication). A database outage keeps the keys the keyring has.
 */
export function keySyncJob(o: KeySyncOptions): JobDefinition {
  const { keyring, clock } = o
  let blocked = ''
  return {
    name: 'key_sync',
    delayMs: () => o.tickMs ?? 1000,
    failureMessage: 'signing key refresh failed; keeping the keys we have',
    recoveryMessage: 'signing keys: the database answers again',
    async run(stopping) {
      if (stopping()) return // a run queued behind another while the instance shuts down
      const version = await keySetVersion(o.db)
      if (version !== keyring.version || clock.nowMs() - keyring.loadedAtMs >= o.refreshSeconds * 1000) await keyring.reload()
      if (o.schedule === false || !keyring.scheduleDue()) return
      const result = await runKeySchedule(o.db, { keks: keyring.keks, policy: keyring.policy, nowMs: clock.nowMs() })
      // Logged once per blocked set, not every tick.
      const nowBlocked = result.blocked.join(',')
      if (nowBlocked !== '' && nowBlocked !== blocked) {
        o.log.error({ kids: result.blocked }, 'cannot decrypt a pending signing key that is due to activate (wrong KEY_ENCRYPTION_KEY?); the active key of its line keeps signing')
      }
      blocked = nowBlocked
      if (changed(result)) {
        o.log.info({ activated: result.activated, retired: result.retired, removed: result.removed, published: result.published }, 'signing key schedule step')
        await keyring.reload()
      }
    },
  }
}
