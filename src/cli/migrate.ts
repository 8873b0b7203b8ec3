import type { Config } from '../config.js'
import { migrateToLatest } from '../db/migrate.js'
import { openConfiguredDatabase } from '../server.js'
import { printJson, type CliIo } from './io.js'

/** `tessera migrate`: applies pending migrations and lists what it did. */
export async function migrateCommand(config: Config, io: CliIo): Promise<number> {
  const handle = await openConfiguredDatabase(config, { migrate: false })
  try {
    const results = await migrateToLatest(handle.db)
    printJson(io, { database: handle.kind, applied: results.map((r) => r.migrationName) })
    return 0
  } finally {
    await handle.close()
  }
}
