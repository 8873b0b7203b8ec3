import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import type { Config } from '../config.js'
import { PGliteDialect } from './pglite-dialect.js'
import { asDb, type Database, type Db } from './schema.js'

/** An open database: real PostgreSQL through pg, or the embedded PGlite. */
export interface DatabaseHandle {
  readonly db: Db
  readonly kind: 'postgres' | 'pglite'
  close(): Promise<void>
}

export type DatabaseTarget =
  | { kind: 'postgres'; url: string; poolSize: number; acquireTimeoutMs: number; lockTimeoutMs: number }
  | { kind: 'pglite'; dataDir: string | undefined } // undefined: in memory

/** Where `config` says the data lives. */
export function databaseTarget(config: Config): DatabaseTarget {
  return config.databaseUrl
    ? { kind: 'postgres', url: config.databaseUrl, poolSize: config.databasePoolSize, acquireTimeoutMs: config.dbAcquireTimeoutMs, lockTimeoutMs: config.lockTimeoutMs }
    : { kind: 'pglite', dataDir: join(config.dataDir, 'pglite') }
}

/** Opens the database; PGlite takes an exclusive lock on its data folder. */
export async function openDatabase(target: DatabaseTarget, log?: { warn(obj: object, msg: string): void }): Promise<DatabaseHandle> {
  if (target.kind === 'postgres') {
    const statementTimeoutMs = Math.max(15_000, target.lockTimeoutMs * 3)
    const pool = new pg.Pool({
      connectionString: target.url,
      max: target.poolSize,
      connectionTimeoutMillis: target.acquireTimeoutMs,
      idleTimeoutMillis: 30_000,
      // Bounded waits: a stuck row lock or a runaway query becomes a 503, not a hung request.
      options: `-c lock_timeout=${target.lockTimeoutMs} -c statement_timeout=${statementTimeoutMs} -c idle_in_transaction_session_timeout=60000`,
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
    const db = asDb(new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }))
    return { db, kind: 'postgres', close: () => db.destroy() }
  }

  const { PGlite } = await import('@electric-sql/pglite')
  let unlock = () => {}
  if (target.dataDir) {
    mkdirSync(target.dataDir, { recursive: true })
    unlock = lockDataDir(target.dataDir)
  }
  try {
    const pglite = await PGlite.create(target.dataDir ?? 'memory://')
    const db = asDb(new Kysely<Database>({ dialect: new PGliteDialect(pglite) }))
    return {
      db,
      kind: 'pglite',
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
      if (Number.isInteger(pid) && pid > 0 && (pid === process.pid || isAlive(pid))) {
        throw new Error(`the embedded database in ${dir} is in use by process ${pid}; run one Tessera per DATA_DIR, or use DATABASE_URL for several instances`)
      }
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
