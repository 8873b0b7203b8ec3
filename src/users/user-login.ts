import { recordEvent } from '../audit/audit.store.js'
import type { RequestContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import { MAX_PASSWORD_BYTES, type PasswordHasher } from './passwords.js'
import type { User } from './user.js'
import { findUserByUsername, updatePasswordHash } from './users.store.js'

const MAX_USERNAME_LENGTH = 256

/** Password checks as the grants use them (no SQL in grants). */
export interface UserLogin {
  /**
   * Checks a username and password for `clientId`. Unknown, disabled and wrong-password users get
   * the same error after the same amount of argon2id work, so neither answer nor timing tells them
   * apart; each failure is audited. A hash made with older parameters is upgraded.
   */
  authenticate(clientId: string, username: string, password: string, ctx: RequestContext): Promise<User>
  /** Audits a successful login that starts no refresh-token family (a family audits its own). */
  recordLogin(clientId: string, userId: string, ctx: RequestContext): Promise<void>
}

export function userLogin(db: Db, hasher: PasswordHasher): UserLogin {
  return {
    async authenticate(clientId, username, password, ctx) {
      if (username.length > MAX_USERNAME_LENGTH) throw new OAuthError('invalid_request', 'username is too long')
      if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) throw new OAuthError('invalid_request', 'password is too long')
      const user = username.includes('\0') ? undefined : await findUserByUsername(db, username)
      const ok = user && !user.disabled && password !== '' ? await hasher.verify(user.passwordHash, password) : await hasher.verifyDecoy(password)
      if (!user || !ok || user.disabled) {
        await recordEvent(db, { type: 'login.failed', clientId, userId: user?.id, ...ctx, detail: { reason: !user ? 'unknown_user' : user.disabled ? 'disabled' : 'bad_password' } })
        throw new OAuthError('invalid_grant', 'invalid username or password')
      }
      // Parameters changed since this hash was made: upgrade it now that we know the password.
      if (hasher.needsRehash(user.passwordHash)) await updatePasswordHash(db, user.id, await hasher.hash(password))
      return user
    },
    async recordLogin(clientId, userId, ctx) {
      await recordEvent(db, { type: 'login.succeeded', clientId, userId, ...ctx })
    },
  }
}
