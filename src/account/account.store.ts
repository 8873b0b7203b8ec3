import { sql } from 'kysely'
import type { Executor, Trx } from '../db/schema.js'

/** What a user sees of their own account (`GET /account`). */
export interface AccountProfile {
  id: string
  username: string
  name: string | null
  email: string | null
  email_verified: boolean
  roles: string[]
  created_at: Date
}

/** The profile of an enabled user; undefined when there is no such user or they are disabled. */
export async function findAccount(db: Executor, userId: string): Promise<AccountProfile | undefined> {
  return db
    .selectFrom('app_user')
    .select(['id', 'username', 'name', 'email', 'email_verified', 'roles', 'created_at'])
    .where('id', '=', userId)
    .where('disabled_at', 'is', null)
    .executeTakeFirst()
}

/** True when the family exists and is not revoked. */
export async function familyNotRevoked(db: Executor, familyId: string): Promise<boolean> {
  const row = await db.selectFrom('refresh_token_family').select('id').where('id', '=', familyId).where('revoked_at', 'is', null).executeTakeFirst()
  return row !== undefined
}

/**
 * Replaces an enabled user's password hash, only while it is still `verifiedHash` (the one the
 * current password was checked against: a password set meanwhile by an operator wins), and holds
 * the user's row lock until the commit. A new version (ETag) for the admin API. False when there is
 * no such user, they are disabled, or their password changed since it was checked.
 */
export async function setAccountPassword(trx: Trx, userId: string, verifiedHash: string, passwordHash: string): Promise<boolean> {
  const row = await trx
    .updateTable('app_user')
    .set({ password_hash: passwordHash, updated_at: sql`now()`, version: sql`version + 1` })
    .where('id', '=', userId)
    .where('password_hash', '=', verifiedHash)
    .where('disabled_at', 'is', null)
    .returning('id')
    .executeTakeFirst()
  return row !== undefined
}
