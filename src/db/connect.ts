import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CompiledQuery, Kysely, PostgresDialect, PostgresDriver, type DatabaseConnection, type PostgresDialectConfig, type TransactionSettings } from 'kysely'
import pg from 'pg'
import type { Config } from '../config.js'
import { EMBEDDED_SOCKET_PORT, embeddedSocketPath } from './embedded-socket.js'
import { PGliteDialect, PGliteSession } from './pglite-dialect.js'
import { asDb, type Database, type Db } from './schema.js'

/** An open database: real PostgreSQL through pg, or the embedded PGlite. */
export interface DatabaseHandle {
  readonly db: Db
  readonly kind: 'postgres' | 'pglite'
  /**
   * `socket`: the embedded database of a running server, reached through its socket
   * (docs/embedded.md); that server owns the schema. Undefined: opened directly.
   */
  readonly via?: 'socket'
  /** The embedded database's session, when this process opened it (the server serves it on its socket). */
  readonly embedded?: PGliteSession
  close(): Promise<void>
}

export type DatabaseTarget =
  | { kind: 'postgres'; url: string; poolSize: number; acquireTimeoutMs: number; lockTimeoutMs: number }
  // dataDir undefined: in memory. socketDir: where a running server serves it (EMBEDDED_DATABASE_SOCKET).
  | { kind: 'pglite'; dataDir: string | undefined; socketDir?: string | undefined }

/** Where `config` says the data lives. */
export function databaseTarget(config: Config): DatabaseTarget {
  return config.databaseUrl
    ? { kind: 'postgres', url: config.databaseUrl, poolSize: config.databasePoolSize, acquireTimeoutMs: config.dbAcquireTimeoutMs, lockTimeoutMs: config.lockTimeoutMs }
    : { kind: 'pglite', dataDir: join(config.dataDir, 'pglite'), socketDir: config.embeddedDatabaseSocket }
}

/** The embedded database is locked by another live process (a running server, or another command). */
export class EmbeddedDatabaseInUseError extends Error {
  constructor(readonly dir: string, readonly pid: number) {
    super(`the embedded database in ${dir} is in use by process ${pid}; run one Tessera per DATA_DIR, or use DATABASE_URL for several instances`)
    this.name = 'EmbeddedDatabaseInUseError'
  }
}

export interface OpenOptions {
  /**
   * A command (not a server): when the embedded database is locked by a running server, connect
   * through that server's socket instead of failing (docs/embedded.md).
   */
  readonly besideServer?: boolean
}

/** Opens the database; PGlite takes an exclusive lock on its data folder. */
export async function openDatabase(target: DatabaseTarget, log?: { warn(obj: object, msg: string): void }, opts: OpenOptions = {}): Promise<DatabaseHandle> {
  if (target.kind === 'postgres') {
    const statementTimeoutMs = Math.max(15_000, target.lockTimeoutMs * 3)
    const timeouts = { lock_timeout: target.lockTimeoutMs, statement_timeout: statementTimeoutMs, idle_in_transaction_session_timeout: 60_000 }
    const pool = new pg.Pool({
      connectionString: target.url,
      max: target.poolSize,
      connectionTimeoutMillis: target.acquireTimeoutMs,
      idleTimeoutMillis: 30_000,
      // Bounded waits: a stuck row lock or a runaway query becomes a 503, not a hung request. For the
      // session on a direct connection; behind PgBouncer in transaction mode (which must list
      // `options` in ignore_startup_parameters) every transaction sets them again (TimeoutsDialect).
      options: Object.entries(timeouts).map(([k, v]) => `-c ${k}=${v}`).join(' '),
      // A silent network partition (no RST) would otherwise hang a query until TCP gives up.
      query_timeout: statementTimeoutMs + 2_000,
      keepAlive: true,
      application_name: 'tessera',
    })
    const warn = (what: string) => (err: Error) => log?.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, what)
    // An idle client losing its connection must not crash the process; the next query reconnects.
    pool.on('error', warn('idle database connection lost'))
    pool.on('connect', (client) => {
      // pg-pool listens only to idle clients; a checked-out one whose socket dies emits 'error' too.
      client.on('error', warn('database connection lost during a request'))
      dropConnectionOnQueryTimeout(client)
    })
    const db = asDb(new Kysely<Database>({ dialect: new TimeoutsDialect({ pool }, timeouts) }))
    return { db, kind: 'postgres', close: () => db.destroy() }
  }

  const { PGlite } = await import('@electric-sql/pglite')
  let unlock = () => {}
  if (target.dataDir) {
    mkdirSync(target.dataDir, { recursive: true })
    try {
      unlock = lockDataDir(target.dataDir)
    } catch (err) {
      if (!(err instanceof EmbeddedDatabaseInUseError) || !opts.besideServer) throw err
      return connectBesideServer(err, target.socketDir)
    }
  }
  try {
    const pglite = await PGlite.create(target.dataDir ?? 'memory://')
    const session = new PGliteSession(pglite)
    const db = asDb(new Kysely<Database>({ dialect: new PGliteDialect(session) }))
    return {
      db,
      kind: 'pglite',
      embedded: session,
      close: async () => {
        try { await db.destroy() } finally { unlock() }
      },
    }
  } catch (err) {
    unlock()
    throw err
  }
}

/**
 * PostgreSQL through pg, with the timeouts set again at the start of every transaction (`set
 * local`, in the same round trip as `begin`): behind PgBouncer in transaction pooling mode the
 * session settings of the startup packet do not follow the client from one server connection to
 * the next, but a transaction always runs on one (docs/pgbouncer.md).
 */
class TimeoutsDialect extends PostgresDialect {
  private readonly setLocal: string

  constructor(private readonly dialectConfig: PostgresDialectConfig, timeouts: Record<string, number>) {
    super(dialectConfig)
    this.setLocal = Object.entries(timeouts).map(([k, v]) => `set local ${k} = ${Math.trunc(v)}`).join('; ')
  }

  override createDriver(): PostgresDriver {
    const setLocal = this.setLocal
    return new (class extends PostgresDriver {
      override async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
        if (settings.isolationLevel || settings.accessMode) {
          await super.beginTransaction(connection, settings)
          await connection.executeQuery(CompiledQuery.raw(setLocal))
        } else {
          // One simple-protocol query (no parameters): several statements, one round trip.
          await connection.executeQuery(CompiledQuery.raw(`begin; ${setLocal}`))
        }
      }
    })(this.dialectConfig)
  }
}

/**
 * After pg's client-side `query_timeout` the connection still has the lost query in flight, and
 * every later query would queue behind it. Destroy the socket, so the pool drops the client.
 */
function dropConnectionOnQueryTimeout(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown
  ;(client as unknown as { query: typeof query }).query = (...args: unknown[]) => {
    const result = query(...args)
    if (result instanceof Promise) {
      result.catch((err: Error) => {
        if (err.message === 'Query read timeout') (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()
      })
    }
    return result
  }
}

/**
 * The embedded database is locked by process `inUse.pid`: when that is a server serving it on its
 * socket, connects there with `pg` (one connection: the session is PGlite's one, shared with the
 * server, so a command never needs two). Otherwise the lock error stands, saying why.
 */
async function connectBesideServer(inUse: EmbeddedDatabaseInUseError, socketDir: string | undefined): Promise<DatabaseHandle> {
  if (inUse.pid === process.pid) throw inUse
  if (socketDir === undefined) throw new Error(`${inUse.message} (EMBEDDED_DATABASE_SOCKET is off, so commands cannot reach it through a running server)`)
  const path = embeddedSocketPath(socketDir)
  if (!existsSync(path)) throw new Error(`${inUse.message} (it serves no database socket at ${path}: a server still starting, or one with EMBEDDED_DATABASE_SOCKET off or set elsewhere)`)
  const pool = new pg.Pool({ host: socketDir, port: EMBEDDED_SOCKET_PORT, user: 'tessera', database: 'tessera', max: 1, connectionTimeoutMillis: 10_000, application_name: 'tessera-cli' })
  pool.on('error', () => undefined) // a lost idle connection: the next query reports it
  try {
    const client = await pool.connect()
    client.release()
  } catch (err) {
    await pool.end().catch(() => undefined)
    throw new Error(`${inUse.message} (its database socket ${path} does not answer: ${(err as Error).message})`)
  }
  const db = asDb(new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }))
  return { db, kind: 'pglite', via: 'socket', close: () => db.destroy() }
}

/** PGlite is single-process: a second process on the same folder would corrupt it. */
function lockDataDir(dir: string): () => void {
  const lockFile = join(dir, '..', 'tessera.lock')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockFile, 'wx', 0o600)
      writeFileSync(fd, String(process.pid))
      closeSync(fd)
      return () => rmSync(lockFile, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(readFileSync(lockFile, 'utf8'))
      // Our own pid counts too: two PGlite instances in one process would corrupt the folder as well.
      if (Number.isInteger(pid) && pid > 0 && (pid === process.pid || isAlive(pid))) throw new EmbeddedDatabaseInUseError(dir, pid)
      rmSync(lockFile, { force: true }) // stale lock from a process that is gone
    }
  }
  throw new Error(`could not lock the embedded database in ${dir}`)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
