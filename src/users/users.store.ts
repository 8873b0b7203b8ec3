import { sql } from 'kysely'
import type { AppUserRow, Executor, Trx } from '../db/schema.js'
import { normalizeUsername, type User, type UserProfile } from './user.js'

function toUser(row: AppUserRow): User {
  return {
    id: row.id, username: row.username, passwordHash: row.password_hash, roles: row.roles, disabled: row.disabled_at !== null, createdAt: row.created_at, updatedAt: row.updated_at, version: row.version,
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
  const set: Record<string, unknown> = { updated_at: sql`now()`, version: sql`version + 1` }
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
/**
 * Replaces a hash made with older parameters by one of the same password with the current ones,
 * only while the stored hash is still `previousHash`: a password set or changed meanwhile (admin
 * API, /account) wins, and a login that verified the old password cannot bring it back.
 */
export async function upgradePasswordHash(db: Executor, id: string, previousHash: string, passwordHash: string): Promise<boolean> {
  const r = await db.updateTable('app_user').set({ password_hash: passwordHash, updated_at: sql`now()` }).where('id', '=', id).where('password_hash', '=', previousHash).executeTakeFirst()
  return Number(r.numUpdatedRows) === 1
}

/**
 * Marks a user disabled (the first disable time is kept): the user's id and whether this call
 * disabled them (false: they were disabled already), or undefined when there is no such user.
 */
export async function markUserDisabled(trx: Trx, username: string): Promise<{ id: string; changed: boolean } | undefined> {
  return trx
    .updateTable('app_user')
    .set({ disabled_at: sql`coalesce(disabled_at, now())`, updated_at: sql`now()`, version: sql`case when disabled_at is null then version + 1 else version end` })
    .where('username', '=', normalizeUsername(username))
    // now() is the transaction's start: equal only when this statement set it.
    .returning(['id', sql<boolean>`disabled_at = now()`.as('changed')])
    .executeTakeFirst()
}

// --- Admin API (issue 14): users by id, with their version (ETag) checked inside the UPDATE.

/** A user by id or by username (the username normalised). */
export async function findUserByRef(db: Executor, ref: { id: string } | { username: string }): Promise<User | undefined> {
  return 'id' in ref ? findUserById(db, ref.id) : findUserByUsername(db, ref.username)
}

/** What a new user is made of; `passwordHash` '' = no password (nothing ever verifies). */
export interface NewUser {
  username: string
  passwordHash: string
  roles: string[]
  profile: Partial<UserProfile>
}

/** Inserts a user with its profile; undefined when the normalised username is taken. */
export async function insertUser(trx: Trx, input: NewUser): Promise<User | undefined> {
  const row = await trx
    .insertInto('app_user')
    .values({
      username: normalizeUsername(input.username), password_hash: input.passwordHash, roles: input.roles,
      name: input.profile.name ?? null, email: input.profile.email ?? null, email_verified: input.profile.emailVerified ?? false,
    })
    .onConflict((oc) => oc.column('username').doNothing())
    .returningAll()
    .executeTakeFirst()
  return row && toUser(row)
}

/** One page of users by normalised username (byte order), after `after`, with filters. */
export async function listUsersPage(db: Executor, q: { limit: number; after?: string | undefined; prefix?: string | undefined; disabled?: boolean | undefined }): Promise<User[]> {
  let query = db.selectFrom('app_user').selectAll()
  if (q.prefix !== undefined) query = query.where(sql<boolean>`starts_with(username, ${q.prefix})`)
  if (q.disabled !== undefined) query = query.where('disabled_at', q.disabled ? 'is not' : 'is', null)
  if (q.after !== undefined) query = query.where(sql<boolean>`username collate "C" > ${q.after}`)
  const rows = await query.orderBy(sql`username collate "C"`).limit(q.limit).execute()
  return rows.map(toUser)
}

/** What an admin update changes (undefined: unchanged; a null profile attribute: cleared). */
export interface UserChanges {
  profile?: Partial<UserProfile> | undefined
  roles?: string[] | undefined
  passwordHash?: string | undefined
  disabled?: boolean | undefined
}

/**
 * Applies `changes` to the user `id` if its version is one of `versions` (any version when
 * undefined), bumping the version, in one statement: the check and the write cannot be split by a
 * concurrent update. Undefined when no row matched (no such user, or another version).
 */
export async function updateUserVersioned(trx: Trx, id: string, versions: number[] | undefined, changes: UserChanges): Promise<User | undefined> {
  const set: Record<string, unknown> = { updated_at: sql`now()`, version: sql`version + 1` }
  const p = changes.profile ?? {}
  if (p.name !== undefined) set.name = p.name
  if (p.email !== undefined) set.email = p.email
  if (p.emailVerified !== undefined) set.email_verified = p.emailVerified
  if (changes.roles !== undefined) set.roles = changes.roles
  if (changes.passwordHash !== undefined) set.password_hash = changes.passwordHash
  // The first disable time is kept.
  if (changes.disabled !== undefined) set.disabled_at = changes.disabled ? sql`coalesce(disabled_at, now())` : null
  let q = trx.updateTable('app_user').set(set).where('id', '=', id)
  if (versions !== undefined) q = q.where('version', 'in', versions)
  const row = await q.returningAll().executeTakeFirst()
  return row && toUser(row)
}

/** Deletes the user `id` if its version is one of `versions` (any when undefined); false when none matched. */
export async function deleteUserVersioned(trx: Trx, id: string, versions: number[] | undefined): Promise<boolean> {
  let q = trx.deleteFrom('app_user').where('id', '=', id)
  if (versions !== undefined) q = q.where('version', 'in', versions)
  const r = await q.executeTakeFirst()
  return Number(r.numDeletedRows) > 0
}

/** Whether a user exists (after a versioned write matched nothing: 404 or 412). */
export async function userExists(db: Executor, id: string): Promise<boolean> {
  return (await db.selectFrom('app_user').select('id').where('id', '=', id).executeTakeFirst()) !== undefined
}
