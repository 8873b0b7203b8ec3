import type { PGlite } from '@electric-sql/pglite'
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
  type TransactionSettings,
} from 'kysely'

/**
 * The one session of an embedded PGlite database, handed out one holder at a time: the server's
 * Kysely connection and each client of the database socket (src/db/embedded-socket.ts) queue here,
 * so a transaction never interleaves with another holder's statements.
 */
export class PGliteSession {
  private queue: Promise<void> = Promise.resolve()

  constructor(readonly pg: PGlite) {}

  /** Waits for the session; the returned function hands it on (call it exactly once). */
  async acquire(): Promise<() => void> {
    let release!: () => void
    const next = new Promise<void>((resolve) => { release = resolve })
    const previous = this.queue
    this.queue = previous.then(() => next)
    await previous
    return release
  }

  /** Resolves once every holder so far has released the session. */
  idle(): Promise<void> {
    return this.queue
  }
}

/**
 * Kysely dialect for the embedded PGlite database. PGlite is one connection, so
 * connections are handed out one at a time: a transaction never interleaves with
 * another request's statements.
 */
export class PGliteDialect implements Dialect {
  constructor(private readonly session: PGliteSession) {}
  createAdapter() { return new PostgresAdapter() }
  createDriver(): Driver { return new PGliteDriver(this.session) }
  createQueryCompiler() { return new PostgresQueryCompiler() }
  createIntrospector(db: Kysely<any>) { return new PostgresIntrospector(db) }
}

class PGliteDriver implements Driver {
  private readonly connection: PGliteConnection
  private release: (() => void) | undefined

  constructor(private readonly session: PGliteSession) {
    this.connection = new PGliteConnection(session.pg)
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    this.release = await this.session.acquire()
    return this.connection
  }

  async beginTransaction(conn: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    let statement = 'begin'
    if (settings.isolationLevel) statement += ` isolation level ${settings.isolationLevel}`
    if (settings.accessMode) statement += ` ${settings.accessMode}`
    await conn.executeQuery(CompiledQuery.raw(statement))
  }

  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('commit'))
  }

  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('rollback'))
  }

  async releaseConnection(): Promise<void> {
    const release = this.release
    this.release = undefined
    release?.()
  }

  async destroy(): Promise<void> {
    await this.session.idle()
    if (!this.session.pg.closed) await this.session.pg.close()
  }
}

class PGliteConnection implements DatabaseConnection {
  constructor(private readonly pg: PGlite) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    if (this.pg.closed) throw new Error('database is closed')
    const result = await this.pg.query<R>(query.sql, [...query.parameters])
    return {
      rows: result.rows,
      ...(result.affectedRows !== undefined ? { numAffectedRows: BigInt(result.affectedRows) } : {}),
    }
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming is not supported on the embedded database')
  }
}
