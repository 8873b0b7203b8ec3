// The use cases of the users admin API (issue 14; docs/admin-users.md). Each owns its transaction:
// the write, its revocations and its one audit event naming the acting client commit together or
// not at all. Versioned writes check the version inside their UPDATE/DELETE (`users.store.ts`).
import { runIdempotent, type IdempotencyRequest, type IdempotentResult, type StoredResponse } from '../admin/idempotency.js'
import { recordEvent, type AuditType } from '../audit/audit.store.js'
import { actorDetail, type AuditContext } from '../audit/context.js'
import { endSsoSessionsIn, type EndedSession } from '../authorization/sso-session.js'
import type { Db, Trx } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'
import type { User, UserProfile } from './user.js'
import { deleteUserVersioned, insertUser, updateUserVersioned, userExists, type NewUser, type UserChanges } from './users.store.js'

/** 404 for an unknown user. */
export function noSuchUser(): OAuthError {
  return new OAuthError('invalid_request', 'no such user').withStatus(404)
}

/** 412: the user changed since the caller read it. */
function staleVersion(): OAuthError {
  return new OAuthError('invalid_request', 'the user was changed since it was read (If-Match does not match its ETag): GET it again, then retry').withStatus(412)
}

function audit(trx: Trx, type: AuditType, userId: string, ctx: AuditContext, detail: Record<string, unknown>) {
  return recordEvent(trx, { type, userId, clientId: ctx.actor?.clientId, ip: ctx.ip, userAgent: ctx.userAgent, detail: { ...detail, ...actorDetail(ctx.actor) } })
}

/** A versioned write that matched nothing: 404 when the user is gone, else 412. */
async function missed(trx: Trx, id: string): Promise<never> {
  throw (await userExists(trx, id)) ? staleVersion() : noSuchUser()
}

async function update(trx: Trx, id: string, versions: number[] | undefined, changes: UserChanges): Promise<User> {
  return (await updateUserVersioned(trx, id, versions, changes)) ?? missed(trx, id)
}

/**
 * Creates a user (the password already checked by the policy and hashed, or '' for none), with an
 * optional Idempotency-Key. 409 when the normalised username is taken.
 */
export async function createUserAsAdmin(db: Db, input: NewUser, ctx: AuditContext, idem?: { request: IdempotencyRequest; respond: (user: User) => StoredResponse }): Promise<IdempotentResult<User>> {
  return runIdempotent(db, idem?.request, async (trx) => {
    const user = await insertUser(trx, input)
    if (!user) throw new OAuthError('invalid_request', `a user named ${JSON.stringify(input.username)} exists already (usernames are compared after Unicode NFKC and lower-casing)`).withStatus(409)
    await audit(trx, 'user.created', user.id, ctx, { username: user.username, roles: user.roles, password: input.passwordHash !== '' })
    return { result: user, stored: idem ? idem.respond(user) : { status: 201, headers: {}, body: null } }
  })
}

/** Profile attributes and roles, if the version matches (`versions`); 404, 412. */
export async function updateUserAsAdmin(db: Db, id: string, versions: number[], changes: { profile?: Partial<UserProfile> | undefined; roles?: string[] | undefined }, ctx: AuditContext): Promise<User> {
  return db.transaction().execute(async (trx) => {
    const user = await update(trx, id, versions, changes)
    const changed = [...Object.keys(changes.profile ?? {}).map((k) => (k === 'emailVerified' ? 'email_verified' : k)), ...(changes.roles !== undefined ? ['roles'] : [])]
    await audit(trx, 'user.updated', id, ctx, { changed, version: user.version })
    return user
  })
}

/**
 * Sets a password (already checked and hashed). Unless told not to, every session of the user ends
 * with it: the refresh-token families and the browser SSO sessions (a reset after a compromise must
 * not leave the attacker's SSO cookie able to get new codes). The caller sends the back-channel
 * logouts after the commit.
 */
export async function setPasswordAsAdmin(db: Db, id: string, versions: number[] | undefined, passwordHash: string, revokeSessions: boolean, ctx: AuditContext): Promise<{ user: User; familiesRevoked: number; ssoSessions: EndedSession[] }> {
  return db.transaction().execute(async (trx) => {
    const user = await update(trx, id, versions, { passwordHash })
    const revoked = revokeSessions ? await revokeFamilies(trx, { userId: id }, 'password_set', ctx) : []
    const ssoSessions = revokeSessions ? await endSsoSessionsIn(trx, { userId: id }, 'password_set', ctx) : []
    await audit(trx, 'user.password_set', id, ctx, { families_revoked: revoked.length, sso_sessions_ended: ssoSessions.length, revoke_sessions: revokeSessions })
    return { user, familiesRevoked: revoked.length, ssoSessions }
  })
}

/** What disabling or deleting ended: the caller sends the back-channel logouts after the commit. */
export interface EndedEverything {
  familiesRevoked: number
  ssoSessions: EndedSession[]
}

async function endEverything(trx: Trx, id: string, reason: 'user_disabled' | 'user_deleted', ctx: AuditContext): Promise<EndedEverything> {
  // The families first, all of them (the locks rotation takes: a refresh in flight finishes first,
  // every later one is refused), then the SSO sessions (whose families are revoked already).
  const families = await revokeFamilies(trx, { userId: id }, reason, ctx)
  const ssoSessions = await endSsoSessionsIn(trx, { userId: id }, reason, ctx)
  return { familiesRevoked: families.length, ssoSessions }
}

/** Disables a user: every family and SSO session ends, in the same transaction, audited. */
export async function disableUserAsAdmin(db: Db, id: string, versions: number[] | undefined, ctx: AuditContext): Promise<{ user: User } & EndedEverything> {
  return db.transaction().execute(async (trx) => {
    const user = await update(trx, id, versions, { disabled: true })
    const ended = await endEverything(trx, id, 'user_disabled', ctx)
    await audit(trx, 'user.disabled', id, ctx, { families_revoked: ended.familiesRevoked, sso_sessions_ended: ended.ssoSessions.length })
    return { user, ...ended }
  })
}

/** Enables a user again (what disabling revoked stays revoked). */
export async function enableUserAsAdmin(db: Db, id: string, versions: number[] | undefined, ctx: AuditContext): Promise<User> {
  return db.transaction().execute(async (trx) => {
    const user = await update(trx, id, versions, { disabled: false })
    await audit(trx, 'user.enabled', id, ctx, {})
    return user
  })
}

/**
 * Deletes a user: every family and SSO session is revoked and audited first, then the row goes,
 * and with it (foreign keys, ON DELETE CASCADE) its families, refresh tokens, SSO sessions,
 * consents and pending authorization requests and codes. Audit events have no foreign key: they
 * stay, with the user id (and `user.deleted` records the username).
 */
export async function deleteUserAsAdmin(db: Db, user: User, versions: number[] | undefined, ctx: AuditContext): Promise<EndedEverything> {
  return db.transaction().execute(async (trx) => {
    const ended = await endEverything(trx, user.id, 'user_deleted', ctx)
    if (!(await deleteUserVersioned(trx, user.id, versions))) await missed(trx, user.id)
    await audit(trx, 'user.deleted', user.id, ctx, { username: user.username, families_revoked: ended.familiesRevoked, sso_sessions_ended: ended.ssoSessions.length })
    return ended
  })
}
