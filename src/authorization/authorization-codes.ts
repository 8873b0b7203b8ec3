import { decodeJwt } from 'jose'
import { recordEvent } from '../audit/audit.store.js'
import type { RequestContext } from '../audit/context.js'
import type { Clock } from '../clock.js'
import type { Db } from '../db/schema.js'
import type { TokenResponse } from '../grants/types.js'
import type { Family, Lifetimes } from '../tokens/refresh-tokens.js'
import { createFamily, revokeFamilies } from '../tokens/refresh-tokens.store.js'
import { denylistAccessToken } from '../tokens/revoked-access-tokens.store.js'
import { lockCode, markCodeUsed } from './authorization.store.js'
import { hashCode } from './issue-code.js'
import { verifierMatches } from './pkce.js'
import type { User } from '../users/user.js'
import { findUserById } from '../users/users.store.js'

/** What `/token` presents with a code (RFC 6749 §4.1.3, RFC 7636 §4.5). */
export interface CodeRedemption {
  clientId: string
  redirectUri: string | undefined
  verifier: string | undefined
}

/** What a valid code grants. */
export interface CodeGrant {
  userId: string
  sessionId: string
  scope: string[]
  nonce: string | undefined
  authTime: Date
  user: User
}

export type RedeemOutcome =
  | { kind: 'issued'; response: TokenResponse }
  | { kind: 'invalid'; reason: string }
  | { kind: 'reused' }

/** Issues the tokens of a valid code; `startFamily` starts its refresh family in the redemption's transaction. */
export type IssueFromCode = (grant: CodeGrant, startFamily: () => Promise<{ family: Family; refreshToken: string }>) => Promise<TokenResponse>

/** Codes as the grant uses them (SQL: authorization.store.ts). */
export interface AuthorizationCodes {
  /**
   * Redeems a code in one transaction that locks its row: exactly one redemption succeeds, on any
   * number of instances. A code presented again revokes what its redemption issued (RFC 6749
   * §4.1.2) before answering; a code that fails a check (client, redirect URI, PKCE, expiry) is spent.
   */
  redeem(code: string, request: CodeRedemption, issue: IssueFromCode, ctx: RequestContext): Promise<RedeemOutcome>
}

export function authorizationCodes(db: Db, settings: { lifetimes: Lifetimes; codeTtlSeconds: number; clock: Clock }): AuthorizationCodes {
  return {
    async redeem(code, request, issue, ctx) {
      const hash = hashCode(code)
      if (!hash) return { kind: 'invalid', reason: 'not a code' }
      return db.transaction().execute(async (trx): Promise<RedeemOutcome> => {
        const row = await lockCode(trx, hash)
        if (!row) return { kind: 'invalid', reason: 'unknown code' }
        if (row.used) {
          // RFC 6749 §4.1.2, RFC 9700 §4.5: revoke everything the first redemption issued.
          if (row.familyId) await revokeFamilies(trx, { familyId: row.familyId }, 'code_reused', ctx)
          if (row.accessTokenJti && row.accessTokenExpiresAt) await denylistAccessToken(trx, row.accessTokenJti, Math.ceil(row.accessTokenExpiresAt.getTime() / 1000))
          await recordEvent(trx, { type: 'authorization_code.reuse_detected', clientId: row.clientId, userId: row.userId, familyId: row.familyId, ...ctx, detail: { presented_by: request.clientId } })
          return { kind: 'reused' }
        }
        // Expired by the database's clock or by this instance's (the stricter of the two wins).
        const expired = row.expired || settings.clock.nowMs() >= row.createdAt.getTime() + settings.codeTtlSeconds * 1000
        const reason =
          row.clientId !== request.clientId ? 'issued to another client'
          : expired ? 'expired'
          : request.redirectUri !== undefined && request.redirectUri !== row.redirectUri ? 'redirect_uri mismatch'
          : !verifierMatches(request.verifier, row.codeChallenge) ? 'PKCE verification failed'
          : !row.sessionLive ? 'session ended or user disabled'
          : undefined
        if (reason !== undefined) {
          await markCodeUsed(trx, hash, undefined)
          return { kind: 'invalid', reason }
        }
        const user = await findUserById(trx, row.userId)
        if (!user) return { kind: 'invalid', reason: 'no such user' }
        const grant: CodeGrant = { userId: row.userId, sessionId: row.sessionId, scope: row.scope.split(' ').filter((s) => s !== ''), nonce: row.nonce, authTime: row.authTime, user }
        let familyId: string | null = null
        const response = await issue(grant, async () => {
          const started = await createFamily(trx, { clientId: row.clientId, userId: row.userId, scope: row.scope, ssoSessionId: row.sessionId, authTime: row.authTime }, settings.lifetimes, ctx)
          familyId = started.family.id
          return started
        })
        const at = decodeJwt(response.access_token)
        await markCodeUsed(trx, hash, { familyId, jti: String(at.jti), expiresAtSeconds: Number(at.exp) })
        return { kind: 'issued', response }
      })
    },
  }
}
