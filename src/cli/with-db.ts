import type { Config } from '../config.js'
import type { Db } from '../db/schema.js'
import { openConfiguredDatabase } from '../server.js'

/** Runs `fn` on the configured database and closes it afterwards. */
export async function withDatabase<T>(config: Config, fn: (db: Db) => Promise<T>): Promise<T> {
  const handle = await openConfiguredDatabase(config)
  try {
    return await fn(handle.db)
  } finally {
    await handle.close()
  }
}
