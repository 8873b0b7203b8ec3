import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  CompiledQuery,
  DEFAULT_MIGRATION_TABLE,
  FileMigrationProvider,
  Kysely,
  Migrator,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  sql,
  type DatabaseConnection,
  type Driver,
  type MigrationResult,
  type QueryResult,
} from 'kysely'
import type { Db } from './schema.js'

// src/db/ → ../../migrations, the same relative place in the sources and in dist/.
const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url))

/** The migrator over this code's migrations (tests use it to stop at an earlier version). */
export function migrator(db: Db | Kysely<any>, opts: { disableTransactions?: boolean } = {}): Migrator { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
    ...opts,
  })
}

/** The advisory lock that serialises migrations across instances (kysely's own id, so older versions wait too). */
const MIGRATION_LOCK_ID = 3853314791062309107n
/** How long a migration waits for another instance's (ms). */
const MIGRATION_LOCK_WAIT_MS = 60_000

/**
 * Applies every pending migration, in order; safe to run from several instances at once.
 *
 * Everything runs in ONE transaction that first takes a transaction-scoped advisory lock
 * (`pg_advisory_xact_lock`), so it holds behind PgBouncer in transaction pooling mode too
 * (docs/pgbouncer.md). kysely's own lock is a session lock taken and released outside the
 * migration transaction: behind a transaction-mode pooler those three statements may run on
 * three different server connections, leaking the lock on one of them.
 */
export async function migrateToLatest(db: Db): Promise<MigrationResult[]> {
  const { error, results } = await db.connection().execute(async (conn) => {
    await sql`begin`.execute(conn)
    try {
      await sql`select set_config('lock_timeout', ${String(MIGRATION_LOCK_WAIT_MS)}, true)`.execute(conn)
      await sql`select pg_advisory_xact_lock(${sql.lit(MIGRATION_LOCK_ID)})`.execute(conn)
      const outcome = await migrator(pinned(conn), { disableTransactions: true }).migrateToLatest()
      await sql.raw(outcome.error ? 'rollback' : 'commit').execute(conn)
      return outcome
    } catch (err) {
      await sql`rollback`.execute(conn).catch(() => undefined)
      throw err
    }
  })
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')
    const reason = error instanceof Error ? error.message : String(error)
    // The cause stays attached: a database that went away mid-migration is retried, not fatal.
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${reason}`, { cause: error })
  }
  return results ?? []
}

/**
 * A Kysely whose every query runs on `conn` (inside the caller's transaction), with no migration
 * lock of its own: the caller holds the transaction-scoped one.
 */
function pinned(conn: Kysely<any>): Kysely<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const connection: DatabaseConnection = {
    executeQuery: <R>(query: CompiledQuery) => conn.executeQuery(query) as Promise<QueryResult<R>>,
    streamQuery: () => { throw new Error('streaming is not used by migrations') },
  }
  const driver: Driver = {
    init: async () => {},
    acquireConnection: async () => connection,
    beginTransaction: async () => { throw new Error('migrations run in the caller\'s transaction') },
    commitTransaction: async () => {},
    rollbackTransaction: async () => {},
    releaseConnection: async () => {},
    destroy: async () => {},
  }
  class LockHeldAdapter extends PostgresAdapter {
    override async acquireMigrationLock(): Promise<void> {}
    override async releaseMigrationLock(): Promise<void> {}
  }
  return new Kysely({
    dialect: {
      createAdapter: () => new LockHeldAdapter(),
      createDriver: () => driver,
      createQueryCompiler: () => new PostgresQueryCompiler(),
      createIntrospector: (k) => new PostgresIntrospector(k),
    },
  })
}

/** How the database's schema compares with this code's migrations. */
export interface SchemaStatus {
  /** Migrations of this code the database has not applied yet. */
  readonly pending: string[]
  /** Migrations the database has applied that this code does not know: a newer version ran them. */
  readonly unknown: string[]
}

/** Reads which migrations the database has applied; an empty database has applied none. */
export async function schemaStatus(db: Db): Promise<SchemaStatus> {
  const known = await migrator(db).getMigrations()
  const { rows } = await sql<{ exists: boolean }>`select to_regclass(${DEFAULT_MIGRATION_TABLE}) is not null as exists`.execute(db)
  const applied = rows[0]?.exists ? (await sql<{ name: string }>`select name from ${sql.table(DEFAULT_MIGRATION_TABLE)} order by name`.execute(db)).rows.map((r) => r.name) : []
  const names = new Set(known.map((m) => m.name))
  return {
    pending: known.filter((m) => m.executedAt === undefined).map((m) => m.name),
    unknown: applied.filter((name) => !names.has(name)),
  }
}
