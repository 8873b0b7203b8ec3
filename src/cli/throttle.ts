import { CLI_CONTEXT } from '../audit/context.js'
import { systemClock } from '../clock.js'
import type { Config } from '../config.js'
import { clearLoginThrottle } from '../throttle/clear-throttle.js'
import { throttleState } from '../throttle/login-throttle.store.js'
import { parseThrottleTarget, throttleView } from '../throttle/throttle-view.js'
import { CliError, parseCommand, printJson, type CliIo } from './io.js'
import { withDatabase } from './with-db.js'

/** `tessera throttle show|clear --username U | --address A` (docs/security.md "Brute force and abuse"). */
export async function throttleCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  if (sub !== 'show' && sub !== 'clear') throw new CliError('usage: tessera throttle show|clear --username U | --address A')
  const o = parseCommand(`throttle ${sub}`, rest)
  const target = parseThrottleTarget({ account: o.username, address: o.address }, { account: '--username', address: '--address' })
  if (sub === 'show') {
    const rows = await withDatabase(config, (db) => throttleState(db, target))
    const now = systemClock.nowMs()
    const counters = rows.map((row) => throttleView(row, now))
    printJson(io, { ...target, locked: counters.some((c) => c.locked), counters })
    return 0
  }
  const cleared = await withDatabase(config, (db) => clearLoginThrottle(db, target, CLI_CONTEXT))
  printJson(io, { ...target, cleared })
  return 0
}
