import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_MIGRATION_TABLE, FileMigrationProvider, Migrator, sql, type MigrationResult } from 'kysely'
import type { Db } from './schema.js'

// src/db/ → ../../migrations, the same relative place in the sources and in dist/.
const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url))

/** The migrator over this code's migrations (tests use it to stop at an earlier version). */
export function migrator(db: Db): Migrator {
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
  })
}

/** Applies every pending migration, in order; safe to run from several instances at once. */
export async function migrateToLatest(db: Db): Promise<MigrationResult[]> {
  const { error, results } = await migrator(db).migrateToLatest()
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')
    const reason = error instanceof Error ? error.message : String(error)
    // The cause stays attached: a database that went away mid-migration is retried, not fatal.
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${reason}`, { cause: error })
  }
  return results ?? []
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
