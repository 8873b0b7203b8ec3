import { setTimeout as sleep } from 'node:timers/promises'
import { buildApp, type Tessera } from './app.js'
import type { Config } from './config.js'
import { databaseTarget, openDatabase, type DatabaseHandle } from './db/connect.js'
import { migrateToLatest } from './db/migrate.js'
import { seedDemo } from './demo.js'
import { isDatabaseUnavailable } from './errors.js'
import { systemClock } from './clock.js'

/** Opens the configured database and applies migrations where that is automatic. */
export async function openConfiguredDatabase(config: Config, opts: { migrate?: boolean } = {}): Promise<DatabaseHandle> {
  // Before the app's logger exists: the same JSON line shape on stderr.
  const log = { warn: (obj: object, msg: string) => console.error(JSON.stringify({ level: 40, time: systemClock.nowMs(), ...obj, msg })) }
  const handle = await openDatabase(databaseTarget(config), log)
  try {
    // The embedded database always migrates itself; PostgreSQL when MIGRATE_ON_START (development).
    if (opts.migrate ?? (handle.kind === 'pglite' || config.migrateOnStart)) await migrateToLatest(handle.db)
    return handle
  } catch (err) {
    await handle.close()
    throw err
  }
}

/** `tessera serve`: waits for the database, listens, and drains on SIGTERM/SIGINT. */
export async function serve(config: Config): Promise<Tessera> {
  let database: DatabaseHandle | undefined
  let tessera: Tessera | undefined
  // A database that is not up yet (container start order) is waited for, not fatal.
  for (let attempt = 1; ; attempt++) {
    try {
      database = await openConfiguredDatabase(config)
      tessera = await buildApp({ config, database })
      break
    } catch (err) {
      await database?.close().catch(() => undefined)
      database = undefined
      if (!isDatabaseUnavailable(err) || attempt >= 60) throw err
      console.error(JSON.stringify({ level: 40, msg: `database not reachable (${(err as Error).message}); retrying`, attempt }))
      await sleep(Math.min(5000, 250 * attempt))
    }
  }
  const { app } = tessera
  const demo = await seedDemo(config, database.db)
  if (demo) app.log.warn({ file: demo }, 'DEVELOPMENT: created a demo user and client; their credentials are in this file')
  await app.listen({ host: config.host, port: config.port })
  app.log.info({ issuer: config.issuer, database: database.kind }, 'tessera is listening')

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    app.log.info({ signal }, 'draining')
    try {
      await tessera.close()
      await database.close()
    } finally {
      process.exit(0)
    }
  }
  process.once('SIGTERM', () => void stop('SIGTERM'))
  process.once('SIGINT', () => void stop('SIGINT'))
  return tessera
}
