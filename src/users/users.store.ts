import { sql } from 'kysely'
import type { AppUserRow, Db, Executor } from '../db/schema.js'

/** A user as the rest of Tessera sees it. */
export interface User {
  id: string
  username: string
  passwordHash: string
  roles: string[]
  disabled: boolean
  createdAt: Date
}

function toUser(row: AppUserRow): User {
  return { id: row.id, username: row.username, passwordHash: row.password_hash, roles: row.roles, disabled: row.disabled_at !== null, createdAt: row.created_at }
}

/** Usernames are compared case-insensitively; they are stored lower-cased. */
export function normalizeUsername(username: string): string {
  return username.normalize('NFC').toLowerCase()
}

export async function findUserByUsername(db: Executor, username: string): Promise<User | undefined> {
  const row = await db.selectFrom('app_user').selectAll().where('username', '=', normalizeUsername(username)).executeTakeFirst()
  return row && toUser(row)
}

/** Inserts a user; returns undefined when the username is taken. */
export async function createUser(db: Executor, input: { username: string; passwordHash: string; roles?: string[] }): Promise<User | undefined> {
  const row = await db
    .insertInto('app_user')
    .values({ username: normalizeUsername(input.username), password_hash: input.passwordHash, roles: input.roles ?? [] })
    .onConflict((oc) => oc.column('username').doNothing())
    .returningAll()
    .executeTakeFirst()
  return row && toUser(row)
}

export async function listUsers(db: Executor): Promise<User[]> {
  const rows = await db.selectFrom('app_user').selectAll().orderBy('created_at').execute()
  return rows.map(toUser)
}

/** Replaces the stored hash (rehash on login after a parameter change). */
export async function updatePasswordHash(db: Executor, id: string, passwordHash: string): Promise<void> {
  await db.updateTable('app_user').set({ password_hash: passwordHash, updated_at: sql`now()` }).where('id', '=', id).execute()
}

/**
 * Disables a user and revokes all of their refresh-token families in one transaction;
 * returns false when there is no such user.
 */
export async function disableUser(db: Db, username: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('app_user')
      .set({ disabled_at: sql`coalesce(disabled_at, now())`, updated_at: sql`now()` })
      .where('username', '=', normalizeUsername(username))
      .returning('id')
      .executeTakeFirst()
    if (!row) return false
    await trx
      .updateTable('refresh_token_family')
      .set({ revoked_at: sql`now()`, revoked_reason: 'user_disabled' })
      .where('user_id', '=', row.id)
      .where('revoked_at', 'is', null)
      .execute()
    return true
  })
}
