import { systemClock } from '../clock.js'
import type { Config } from '../config.js'
import type { Db } from '../db/schema.js'
import { awaitPropagation, type PropagationReport } from '../propagation/await-propagation.js'
import { COMMANDS } from './commands.js'
import { CliError, type CliIo } from './io.js'
import { withDatabase } from './with-db.js'

/** The commands that change what instances cache, and so wait for them (and take `--wait`). */
export const CHANGE_COMMANDS: ReadonlySet<string> = new Set(Object.entries(COMMANDS).filter(([, c]) => c.change).map(([n]) => n))

/**
 * Runs a change on the configured database, then waits until every live instance has applied it
 * (docs/operations.md "Changes reach every instance"), at most `PROPAGATION_WAIT_SECONDS` (or `--wait`).
 * `unchanged(result)` true (say, no such key) skips the wait. Instances that did not confirm are
 * named on stderr too; the command still succeeds: the change is committed.
 */
export async function withChange<T>(config: Config, io: CliIo, fn: (db: Db) => Promise<T>, unchanged?: (result: T) => boolean): Promise<{ result: T; propagation: PropagationReport | undefined }> {
  return withDatabase(config, async (db) => {
    const result = await fn(db)
    if (unchanged?.(result)) return { result, propagation: undefined }
    const propagation = await awaitPropagation(db, { clock: systemClock, waitSeconds: config.propagationWaitSeconds, staleSeconds: config.instanceStaleSeconds })
    if (propagation.error) io.err(`tessera: warning: the change is committed, but ${propagation.error}`)
    if (propagation.unconfirmed.length > 0) {
      const who = propagation.unconfirmed.map((i) => `${i.instance} (${i.host}, pid ${i.pid})`).join(', ')
      io.err(`tessera: warning: the change is committed, but ${propagation.unconfirmed.length} instance(s) did not confirm it within ${propagation.waited_ms} ms: ${who}`)
    }
    if (propagation.stale.length > 0) {
      const who = propagation.stale.map((i) => `${i.instance} (${i.host}, pid ${i.pid})`).join(', ')
      io.err(`tessera: warning: ${propagation.stale.length} instance(s) have not sent a heartbeat for over INSTANCE_STALE_SECONDS (frozen, cut off, or dead without stopping) and have not applied the change: ${who}`)
    }
    return { result, propagation }
  })
}

/**
 * Takes `--wait SECONDS` (or `--wait=SECONDS`) out of a change command's arguments: it overrides
 * PROPAGATION_WAIT_SECONDS for this command. Other commands keep it (and refuse it as unknown).
 */
export function takeWaitOption(config: Config, command: string | undefined, args: string[]): { config: Config; args: string[] } {
  if (!CHANGE_COMMANDS.has(`${command} ${args[0]}`)) return { config, args }
  const rest: string[] = []
  let wait: string | undefined
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--wait') {
      wait = args[++i]
      if (wait === undefined) throw new CliError('--wait needs a number of seconds')
    } else if (a.startsWith('--wait=')) {
      wait = a.slice('--wait='.length)
    } else {
      rest.push(a)
    }
  }
  if (wait === undefined) return { config, args }
  if (!/^\d{1,3}$/.test(wait) || Number(wait) > 300) throw new CliError(`--wait must be a whole number of seconds from 0 to 300 (got "${wait}")`)
  return { config: Object.freeze({ ...config, propagationWaitSeconds: Number(wait) }), args: rest }
}
