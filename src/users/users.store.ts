import { sql } from 'kysely'
import type { AppUserRow, Executor, Trx } from '../db/schema.js'
import { normalizeUsername, type User, type UserProfile } from './user.js'

function toUser(row: AppUserRow): User {
  return {
    id: row.id, username: row.username, passwordHash: row.password_hash, roles: row.roles, disabled: row.disabled_at !== null, createdAt: row.created_at,
    profile: { name: row.name, email: row.email, emailVerified: row.email_verified },
  }
}

/** A user by id (enabled or not). */
export async function findUserById(db: Executor, id: string): Promise<User | undefined> {
  const row = await db.selectFrom('app_user').selectAll().where('id', '=', id).executeTakeFirst()
  return row && toUser(row)
}

/** Sets the profile attributes given (undefined: unchanged, null: cleared); false when no such user. */
export async function updateUserProfile(db: Executor, username: string, profile: Partial<UserProfile>): Promise<boolean> {
  const set: Record<string, unknown> = { updated_at: sql`now()` }
  if (profile.name !== undefined) set.name = profile.name
  if (profile.email !== undefined) set.email = profile.email
  if (profile.emailVerified !== undefined) set.email_verified = profile.emailVerified
  const row = await db.updateTable('app_user').set(set).where('username', '=', normalizeUsername(username)).returning('id').executeTakeFirst()
  return row !== undefined
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
 * Marks a user disabled (the first disable time is kept): the user's id and whether this call
 * disabled them (false: they were disabled already), or undefined when there is no such user.
 */
export async function markUserDisabled(trx: Trx, username: string): Promise<{ id: string; changed: boolean } | undefined> {
  return trx
    .updateTable('app_user')
    .set({ disabled_at: sql`coalesce(disabled_at, now())`, updated_at: sql`now()` })
    .where('username', '=', normalizeUsername(username))
    // now() is the transaction's start: equal only when this statement set it.
    .returning(['id', sql<boolean>`disabled_at = now()`.as('changed')])
    .executeTakeFirst()
}
