import type { Config } from '../config.js'
import { housekeepingSettings, runHousekeeping } from '../housekeeping/housekeeping.js'
import { CliError, parseCommand, printJson, type CliIo } from './io.js'
import { withDatabase } from './with-db.js'

/** `tessera housekeeping run`: deletes dead rows batch by batch until none is left; prints the counts. */
export async function housekeepingCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  if (sub !== 'run') throw new CliError('usage: tessera housekeeping run')
  parseCommand('housekeeping run', rest)
  const deleted = await withDatabase(config, (db) => runHousekeeping(db, housekeepingSettings(config), { pauseMs: 10 }))
  printJson(io, deleted)
  return 0
}
