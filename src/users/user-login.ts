import { recordEvent } from '../audit/audit.store.js'
import type { RequestContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { Attempt, LoginThrottle } from '../throttle/login-throttle.js'
import { busyError, MAX_PASSWORD_BYTES, type PasswordHasher, type Reservation } from './passwords.js'
import type { User } from './user.js'
import { findUserByUsername, upgradePasswordHash } from './users.store.js'

const MAX_USERNAME_LENGTH = 256

/** Password checks as the grants use them (no SQL in grants). */
export interface UserLogin {
  /**
   * Checks a username and password for `clientId`, throttled (README "Brute force and abuse"): a
   * locked account or address is refused (429) before any hash; a full hashing queue is refused
   * (503) at once. Unknown, disabled and wrong-password users get the same error after the same
   * amount of argon2id work, so neither answer nor timing tells them apart; each failure is
   * audited (with the locks it started). A hash made with older parameters is upgraded.
   */
  authenticate(clientId: string, username: string, password: string, ctx: RequestContext): Promise<User>
  /** Audits a successful login that starts no refresh-token family (a family audits its own). */
  recordLogin(clientId: string, userId: string, ctx: RequestContext): Promise<void>
}

export function userLogin(db: Db, hasher: PasswordHasher, throttle: LoginThrottle, metrics: Pick<Metrics, 'passwordCheckShed'>): UserLogin {
  const shed = () => {
    metrics.passwordCheckShed()
    return busyError()
  }
  return {
    async authenticate(clientId, username, password, ctx) {
      if (username.length > MAX_USERNAME_LENGTH) throw new OAuthError('invalid_request', 'username is too long')
      if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) throw new OAuthError('invalid_request', 'password is too long')
      // Load shedding first: a full queue answers at once, before any database work.
      let slot: Reservation
      try {
        slot = hasher.reserve()
      } catch (err) {
        throw err instanceof OAuthError ? shed() : err
      }
      let attempt: Attempt
      try {
        // Throttling before anything that depends on the account: the 429 is the same for everyone.
        attempt = await throttle.begin(username, ctx.ip)
      } catch (err) {
        slot.release()
        throw err
      }
      let user: User | undefined
      let ok: boolean
      try {
        user = username.includes('\0') ? undefined : await findUserByUsername(db, username)
        ok = user && !user.disabled && password !== '' && user.passwordHash !== '' ? await slot.verify(user.passwordHash, password) : await slot.verifyDecoy(password)
      } catch (err) {
        slot.release()
        // No password was judged: take the attempt's count back (best effort; it fails with the database).
        await throttle.cancel(attempt).catch(() => {})
        throw err
      }
      if (!user || !ok || user.disabled) {
        await recordFailure(db, throttle, attempt, { clientId, userId: user?.id, ctx, reason: !user ? 'unknown_user' : user.disabled ? 'disabled' : 'bad_password' })
        throw new OAuthError('invalid_grant', 'invalid username or password')
      }
      await throttle.succeeded(attempt)
      // Parameters changed since this hash was made: upgrade it now that we know the password.
      if (hasher.needsRehash(user.passwordHash)) {
        // Best effort: with the queue full, the upgrade waits for a later login.
        const upgraded = await hasher.hash(password).catch((err: unknown) => {
          if (err instanceof OAuthError) return undefined
          throw err
        })
        // The user as stored now: a caller that writes conditionally on the verified hash sees the upgrade.
        if (upgraded && (await upgradePasswordHash(db, user.id, user.passwordHash, upgraded))) return { ...user, passwordHash: upgraded }
      }
      return user
    },
    async recordLogin(clientId, userId, ctx) {
      await recordEvent(db, { type: 'login.succeeded', clientId, userId, ...ctx })
    },
  }
}

/** The failure and the locks it started, audited together; the locks counted once committed. */
async function recordFailure(db: Db, throttle: LoginThrottle, attempt: Attempt, f: { clientId: string; userId: string | undefined; ctx: RequestContext; reason: string }): Promise<void> {
  const who = { clientId: f.clientId, userId: f.userId, ...f.ctx }
  await db.transaction().execute(async (trx) => {
    await recordEvent(trx, { type: 'login.failed', ...who, detail: { reason: f.reason } })
    for (const event of throttle.lockEvents(attempt, who)) await recordEvent(trx, event)
  })
  throttle.countLocks(attempt)
}
