import { sql } from 'kysely'
import type { Executor, Trx } from '../db/schema.js'
import type { AuthorizationParams } from './request.js'

/** A pending authorization request (a pushed one, or one waiting for the login or consent page). */
export interface PendingRequest {
  id: string
  clientId: string
  params: AuthorizationParams
  pushed: boolean
  browserHash: Buffer | null
  csrfToken: string | null
  userId: string | null
  sessionId: string | null
}

function toPending(row: { id: string; client_id: string; params: Record<string, unknown>; pushed: boolean; browser_hash: Uint8Array | null; csrf_token: string | null; user_id: string | null; session_id: string | null }): PendingRequest {
  return {
    id: row.id, clientId: row.client_id, params: row.params as unknown as AuthorizationParams, pushed: row.pushed,
    browserHash: row.browser_hash ? Buffer.from(row.browser_hash) : null, csrfToken: row.csrf_token, userId: row.user_id, sessionId: row.session_id,
  }
}

/** Stores a pending request that lives `ttlSeconds` by the database clock. */
export async function insertRequest(db: Executor, r: { id: string; clientId: string; params: AuthorizationParams; pushed: boolean; browserHash: Buffer | null; csrfToken: string | null; ttlSeconds: number }): Promise<void> {
  await db
    .insertInto('authorization_request')
    .values({
      id: r.id, client_id: r.clientId, params: JSON.stringify(r.params), pushed: r.pushed, browser_hash: r.browserHash, csrf_token: r.csrfToken,
      expires_at: sql<Date>`now() + make_interval(secs => ${r.ttlSeconds})`,
    })
    .execute()
}

/** RFC 9126 §4: takes a pushed request once (single use), for its client, while it lives. */
export async function claimPushedRequest(db: Executor, id: string, clientId: string): Promise<AuthorizationParams | undefined> {
  const row = await db
    .updateTable('authorization_request')
    .set({ used_at: sql`now()` })
    .where('id', '=', id).where('pushed', '=', true).where('client_id', '=', clientId)
    .where('used_at', 'is', null).where('expires_at', '>', sql<Date>`now()`)
    .returning('params')
    .executeTakeFirst()
  return row?.params as unknown as AuthorizationParams | undefined
}

/** A live, unused interactive request. */
export async function findPendingRequest(db: Executor, id: string): Promise<PendingRequest | undefined> {
  const row = await db
    .selectFrom('authorization_request').selectAll()
    .where('id', '=', id).where('pushed', '=', false).where('used_at', 'is', null).where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirst()
  return row && toPending(row)
}

/** Records who logged in for the request (and the session that login started). */
export async function setRequestLogin(db: Executor, id: string, userId: string, sessionId: string): Promise<void> {
  await db.updateTable('authorization_request').set({ user_id: userId, session_id: sessionId }).where('id', '=', id).execute()
}

/** Marks a request used: true for exactly one caller (a form posted twice finishes once). */
export async function consumeRequest(trx: Trx, id: string): Promise<boolean> {
  const row = await trx.updateTable('authorization_request').set({ used_at: sql`now()` }).where('id', '=', id).where('used_at', 'is', null).returning('id').executeTakeFirst()
  return row !== undefined
}

/** The scopes a user has granted a client (empty when none). */
export async function grantedScopes(db: Executor, userId: string, clientId: string): Promise<string[]> {
  const row = await db.selectFrom('consent').select('scopes').where('user_id', '=', userId).where('client_id', '=', clientId).executeTakeFirst()
  return row?.scopes ?? []
}

/** Remembers a grant, adding `scopes` to what the user granted the client before. */
export async function grantConsent(db: Executor, userId: string, clientId: string, scopes: string[]): Promise<void> {
  await db
    .insertInto('consent')
    .values({ user_id: userId, client_id: clientId, scopes })
    .onConflict((oc) => oc.columns(['user_id', 'client_id']).doUpdateSet({
      scopes: sql`array(select distinct unnest(consent.scopes || excluded.scopes) order by 1)`,
      granted_at: sql`now()`,
    }))
    .execute()
}

/** A user's remembered consents. */
export async function listConsents(db: Executor, userId: string): Promise<{ client_id: string; scopes: string[]; granted_at: Date }[]> {
  return db.selectFrom('consent').select(['client_id', 'scopes', 'granted_at']).where('user_id', '=', userId).orderBy('client_id').execute()
}

/** Forgets a user's consent for one client, or for all; how many were removed. */
export async function deleteConsents(db: Executor, userId: string, clientId: string | undefined): Promise<number> {
  let q = db.deleteFrom('consent').where('user_id', '=', userId)
  if (clientId !== undefined) q = q.where('client_id', '=', clientId)
  const rows = await q.returning('client_id').execute()
  return rows.length
}

/** What a code is bound to (RFC 6749 §4.1.3, RFC 7636 §4.6, OIDC Core §3.1.3.2). */
export interface CodeBinding {
  clientId: string
  userId: string
  sessionId: string
  redirectUri: string
  codeChallenge: string
  nonce: string | undefined
  scope: string
  authTime: Date
}

/** Stores a code by its hash, living `ttlSeconds` by the database clock. */
export async function insertCode(trx: Trx, hash: Buffer, b: CodeBinding, ttlSeconds: number): Promise<void> {
  await trx
    .insertInto('authorization_code')
    .values({
      code_hash: hash, client_id: b.clientId, user_id: b.userId, session_id: b.sessionId, redirect_uri: b.redirectUri,
      code_challenge: b.codeChallenge, nonce: b.nonce ?? null, scope: b.scope, auth_time: b.authTime,
      expires_at: sql<Date>`now() + make_interval(secs => ${ttlSeconds})`,
    })
    .execute()
}

export interface LockedCode extends CodeBinding {
  createdAt: Date
  /** By the database clock. */
  expired: boolean
  used: boolean
  /** The SSO session is not ended and its user not disabled. */
  sessionLive: boolean
  familyId: string | null
  accessTokenJti: string | null
  accessTokenExpiresAt: Date | null
}

/**
 * Locks a code's row for the redemption: a second redemption, on any instance, waits here until
 * the first commits, and then sees it used with what it issued.
 */
export async function lockCode(trx: Trx, hash: Buffer): Promise<LockedCode | undefined> {
  const row = await trx
    .selectFrom('authorization_code')
    .selectAll()
    .select(sql<boolean>`expires_at <= now()`.as('expired'))
    // Bound to the session and the user: a code outlives neither a logout nor a disable.
    .select(sql<boolean>`exists (select 1 from sso_session s join app_user u on u.id = s.user_id where s.id = session_id and s.revoked_at is null and u.disabled_at is null)`.as('session_live'))
    .where('code_hash', '=', hash)
    .forUpdate()
    .executeTakeFirst()
  if (!row) return undefined
  return {
    clientId: row.client_id, userId: row.user_id, sessionId: row.session_id, redirectUri: row.redirect_uri, codeChallenge: row.code_challenge,
    nonce: row.nonce ?? undefined, scope: row.scope, authTime: row.auth_time, createdAt: row.created_at, expired: row.expired, used: row.used_at !== null, sessionLive: row.session_live,
    familyId: row.family_id, accessTokenJti: row.access_token_jti, accessTokenExpiresAt: row.access_token_expires_at,
  }
}

/** Marks a code used, with what its redemption issued (null when the redemption failed). */
export async function markCodeUsed(trx: Trx, hash: Buffer, issued: { familyId: string | null; jti: string; expiresAtSeconds: number } | undefined): Promise<void> {
  await trx
    .updateTable('authorization_code')
    .set({
      used_at: sql`now()`,
      family_id: issued?.familyId ?? null,
      access_token_jti: issued?.jti ?? null,
      access_token_expires_at: issued ? new Date(issued.expiresAtSeconds * 1000) : null,
    })
    .where('code_hash', '=', hash)
    .execute()
}
