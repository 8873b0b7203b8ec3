import { recordEvent } from '../audit/audit.store.js'
import type { RequestContext } from '../audit/context.js'
import { endSsoSessionsIn, type EndedSession } from '../authorization/sso-session.js'
import type { Db } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import { familySsoSession, revokeFamilies } from '../tokens/refresh-tokens.store.js'
import { passwordPolicyProblem, type PasswordHasher } from '../users/passwords.js'
import type { UserLogin } from '../users/user-login.js'
import type { User } from '../users/user.js'
import { findUserById } from '../users/users.store.js'
import { familyNotRevoked, setAccountPassword } from './account.store.js'

export interface PasswordChange {
  userId: string
  /** The client the caller's access token was issued to (audited with the check). */
  clientId: string
  /** The caller's own session (the token's `sid`): kept, with the SSO session it belongs to. */
  familyId: string | undefined
  currentPassword: string
  newPassword: string
}

export interface PasswordChanged {
  /** Refresh-token families revoked (every live one of the user but the caller's). */
  sessionsRevoked: number
  /** SSO sessions ended (every one of the user but the caller's); the caller sends back-channel logouts. */
  ssoSessionsEnded: EndedSession[]
}

/** What a token whose user went away meanwhile gets: the same as a dead token at the guard. */
const goneUser = () => new OAuthError('invalid_token', 'the access token is invalid', 'user disabled or deleted').withScheme('Bearer')

/**
 * A user changes their own password (docs/account.md). The new password must follow the policy
 * (`invalid_request` naming the rule, before any password is checked); the current one is checked
 * exactly like a login (`UserLogin.authenticate`: the same throttle counters, 429 while locked,
 * the same argon2id queue, 503 when full, a failure audited as `login.failed`), and a wrong one is
 * `invalid_grant`. Then, in one transaction: the new argon2id hash, every other refresh-token
 * family of the user revoked and every other SSO session ended (each audited), and one
 * `account.password_changed` event.
 */
export async function changePassword(db: Db, deps: { users: UserLogin; passwords: PasswordHasher }, input: PasswordChange, ctx: RequestContext): Promise<PasswordChanged> {
  const user = await findUserById(db, input.userId)
  if (!user || user.disabled) throw goneUser()
  const problem = await passwordPolicyProblem(input.newPassword, user.username)
  if (problem) throw new OAuthError('invalid_request', `new_password: ${problem}`)
  let verified: User
  try {
    verified = await deps.users.authenticate(input.clientId, user.username, input.currentPassword, ctx)
  } catch (err) {
    if (err instanceof OAuthError && err.code === 'invalid_grant') throw new OAuthError('invalid_grant', 'current_password is wrong', 'bad current password')
    if (err instanceof OAuthError && err.code === 'invalid_request') throw new OAuthError('invalid_request', `current_password: ${err.description}`)
    throw err
  }
  if (input.newPassword === input.currentPassword) throw new OAuthError('invalid_request', 'new_password must differ from current_password')
  // In the bounded queue: a full one is 503 (nothing changed yet).
  const hash = await deps.passwords.hash(input.newPassword)
  return db.transaction().execute(async (trx) => {
    // The user's row lock, taken here, orders concurrent changes of one user: a change whose own
    // session a change committed meanwhile ended is refused (else each would end the other's).
    if (!(await setAccountPassword(trx, user.id, verified.passwordHash, hash))) {
      const now = await findUserById(trx, user.id)
      if (!now || now.disabled) throw goneUser()
      if (input.familyId !== undefined && !(await familyNotRevoked(trx, input.familyId))) {
        throw new OAuthError('invalid_token', 'the access token is invalid', 'session ended meanwhile').withScheme('Bearer')
      }
      throw new OAuthError('invalid_grant', 'current_password is wrong', 'password changed since it was checked')
    }
    if (input.familyId !== undefined && !(await familyNotRevoked(trx, input.familyId))) {
      throw new OAuthError('invalid_token', 'the access token is invalid', 'session ended meanwhile').withScheme('Bearer')
    }
    const keepSso = input.familyId === undefined ? null : await familySsoSession(trx, input.familyId)
    const families = await revokeFamilies(trx, { userId: user.id, exceptFamilyId: input.familyId }, 'password_changed', ctx)
    const ended = await endSsoSessionsIn(trx, { userId: user.id, exceptId: keepSso ?? undefined }, 'password_changed', ctx)
    await recordEvent(trx, {
      type: 'account.password_changed', clientId: input.clientId, userId: user.id, familyId: input.familyId, ...ctx,
      detail: { families_revoked: families.length, sso_sessions_ended: ended.length, ...(keepSso ? { kept_sso_session: keepSso } : {}) },
    })
    return { sessionsRevoked: families.length + ended.reduce((n, s) => n + s.revokedFamilies, 0), ssoSessionsEnded: ended }
  })
}
