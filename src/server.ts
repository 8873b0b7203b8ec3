import { resolve } from 'node:path'
import { createApp, type StartingTessera } from './app.js'
import type { Config } from './config.js'
import { databaseTarget, openDatabase, type DatabaseHandle } from './db/connect.js'
import { EmbeddedSocketServer } from './db/embedded-socket.js'
import { ensureDevAdmin, localTokenEndpoint } from './dev-admin.js'
import { migrateToLatest, schemaStatus } from './db/migrate.js'
import { seedDemo } from './demo.js'
import { systemClock } from './clock.js'
import { NotReadyError, Startup } from './startup.js'

// Before the app's logger exists: the same JSON line shape on stderr.
const earlyLog = { warn: (obj: object, msg: string) => console.error(JSON.stringify({ level: 40, time: systemClock.nowMs(), ...obj, msg })) }

/** Opens the configured database and applies migrations where that is automatic. */
export async function openConfiguredDatabase(config: Config, opts: { migrate?: boolean } = {}): Promise<DatabaseHandle> {
  // A command: beside a running embedded server, through its socket (docs/embedded.md).
  const handle = await openDatabase(databaseTarget(config), earlyLog, { besideServer: true })
  try {
    // The embedded database always migrates itself (a running server has: it owns the schema);
    // PostgreSQL when MIGRATE_ON_START (development).
    if (opts.migrate ?? (handle.via !== 'socket' && (handle.kind === 'pglite' || config.migrateOnStart))) await migrateToLatest(handle.db)
    return handle
  } catch (err) {
    await handle.close()
    throw err
  }
}

/**
 * Brings the schema to this code's latest migration where that is automatic (embedded,
 * MIGRATE_ON_START), else checks that it is there. A schema with migrations this code does not
 * know (a newer version migrated it) is fatal; pending migrations are waited for (`tessera migrate`
 * may be running as a separate deploy step).
 */
export async function prepareSchema(database: DatabaseHandle, config: Config): Promise<void> {
  const { pending, unknown } = await schemaStatus(database.db)
  if (unknown.length > 0) {
    throw new Error(`the database schema is newer than this version of Tessera (migrations it does not know: ${unknown.join(', ')}): refusing to start; run the version that migrated it, or a newer one`)
  }
  if (pending.length === 0) return
  if (database.kind === 'pglite' || config.migrateOnStart) await migrateToLatest(database.db)
  else throw new NotReadyError(`database schema not migrated: ${pending.length} migration(s) pending (run \`tessera migrate\`)`)
}

/**
 * `tessera serve`: listens at once, then connects, checks (or applies) the schema and loads the
 * keys, retrying while the database is unavailable; until then only `/healthz`, `/readyz` and
 * `/metrics` answer, every other route is 503. Drains on SIGTERM/SIGINT in every phase.
 * Resolves once ready (or stopped); a fatal start-up error (wrong KEK, a schema newer than the
 * code, a wrong database setting) closes everything and rejects with a message for the operator.
 */
export async function serve(config: Config): Promise<void> {
  // A signal before the app can drain (the embedded database still opening, the port not bound
  // yet) is remembered, and honoured as soon as what was started can be closed.
  let early: string | undefined
  const onEarly = (signal: string) => () => { early ??= signal }
  const earlyTerm = onEarly('SIGTERM')
  const earlyInt = onEarly('SIGINT')
  process.once('SIGTERM', earlyTerm)
  process.once('SIGINT', earlyInt)
  // PostgreSQL: a pool, no connection yet. Embedded: opens and locks the data folder (a second
  // process on it is refused here, before listening).
  const database = await openDatabase(databaseTarget(config), earlyLog)
  if (early) {
    earlyLog.warn({ signal: early }, 'stopped before listening')
    await database.close()
    return
  }
  let tessera: StartingTessera | undefined
  try {
    tessera = await createApp({ config, database })
    await tessera.app.listen({ host: config.host, port: config.port })
  } catch (err) {
    await tessera?.close().catch(() => undefined)
    await database.close()
    throw err
  }
  const { app, readiness } = tessera
  app.log.info({ issuer: config.issuer, database: database.kind }, 'tessera is listening; starting')
  if (database.kind === 'pglite' && config.env === 'production') {
    // Asked for with ALLOW_EMBEDDED_DATABASE=true (config.ts refuses it otherwise): said once.
    app.log.warn({ dataDir: resolve(config.dataDir) }, 'embedded database in production: one instance only, every user, client and key lives in DATA_DIR (keep it on a volume and back it up)')
  }

  const started = tessera
  const startedMs = systemClock.nowMs()
  readiness.reason = 'connecting to the database'
  const startup = new Startup(
    async () => {
      await prepareSchema(database, config)
      await started.prepare()
      const demo = await seedDemo(config, database.db)
      if (demo) app.log.warn({ file: demo }, 'DEVELOPMENT: created a demo user and client; their credentials are in this file')
      const address = app.server.address()
      if (address !== null && typeof address === 'object') {
        const admin = await ensureDevAdmin(config, database.db, localTokenEndpoint(address))
        if (admin?.created) app.log.warn({ file: admin.file }, 'DEVELOPMENT: created an admin client (scope tessera:admin); `tessera dev admin-token` prints a token for it')
      }
    },
    { clock: systemClock, log: app.log, waiting: (reason) => { readiness.reason = reason } },
  )

  let socket: EmbeddedSocketServer | undefined
  let closing: Promise<void> | undefined
  const closeAll = () => (closing ??= (async () => {
    await startup.stop()
    // Commands beside the server are cut off (their open transactions rolled back) first.
    await socket?.close().catch((err: Error) => app.log.warn({ err: { message: err.message } }, 'closing the embedded database socket failed'))
    try {
      await started.close()
    } finally {
      await database.close()
    }
  })())
  const stop = (signal: string) => {
    if (closing) return
    app.log.info({ signal }, 'draining')
    // Exit 1 when the drain or the close failed: a supervisor should know.
    void closeAll().then(
      () => process.exit(0),
      (err: Error) => {
        app.log.error({ err: { message: err.message } }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.removeListener('SIGTERM', earlyTerm)
  process.removeListener('SIGINT', earlyInt)
  process.once('SIGTERM', () => stop('SIGTERM'))
  process.once('SIGINT', () => stop('SIGINT'))
  if (early) {
    stop(early)
    return
  }

  let ready: boolean
  try {
    ready = await startup.run()
  } catch (err) {
    if (closing) return // a signal came first: that shutdown exits
    app.log.fatal({ err: { message: (err as Error).message, code: (err as { code?: unknown }).code } }, 'cannot start; exiting')
    await closeAll()
    throw err
  }
  if (!ready || closing) return
  // Embedded: `tessera` commands work beside this server through its socket (docs/embedded.md).
  // Opened once the schema is in place; a failure costs the commands, not the server.
  if (database.embedded && config.embeddedDatabaseSocket) {
    try {
      socket = await EmbeddedSocketServer.start({ session: database.embedded, dir: config.embeddedDatabaseSocket, clock: systemClock, log: app.log })
      app.log.info({ socket: socket.path }, 'serving the embedded database to `tessera` commands on a Unix socket (owner only)')
    } catch (err) {
      app.log.warn({ err: { message: (err as Error).message } }, 'cannot serve the embedded database on its socket: `tessera` commands will not work while this server runs')
    }
    if (closing) await socket?.close()
  }
  await started.open()
  app.log.info({ database: database.kind, attempts: startup.attempts, ms: systemClock.nowMs() - startedMs }, 'tessera is ready')
}
