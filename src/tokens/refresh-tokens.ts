import type { RequestContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { createFamily, rotate } from './refresh-tokens.store.js'
import type { SuccessorDeriver } from './successor.js'

/** What a live family lets the holder of its newest token do. */
export interface Family {
  id: string
  clientId: string
  userId: string
  scope: string
  authTime: Date
  expiresAt: Date
  /** The SSO session it was issued under (authorization-code flow), when known: the ID token's `sid`. */
  ssoSessionId?: string | null | undefined
}

/** The family's user, read in the same statement that locks the family. */
export interface FamilyUser {
  username: string
  roles: string[]
}

export interface Lifetimes {
  idleSeconds: number
  absoluteSeconds: number
}

export type RotateOutcome =
  | { kind: 'rotated' | 'retried'; family: Family; user: FamilyUser; refreshToken: string }
  | { kind: 'not_found' | 'wrong_client' | 'revoked' | 'expired' | 'user_disabled' | 'invalid_scope' | 'retry_mismatch' }
  | { kind: 'reused'; familyId: string }

/** Refresh-token families as the grants use them (SQL: refresh-tokens.store.ts). */
export interface RefreshTokens {
  /** Starts a family (one login on one device) with its first token; audits the login and the issue. */
  startFamily(input: { clientId: string; userId: string; scope: string }, ctx: RequestContext): Promise<{ family: Family; refreshToken: string }>
  /**
   * Rotates a presented token in one statement (docs/tokens.md "Refresh-token rotation"): a retry within
   * the grace window gets the same successor; any other second use revokes the family.
   * `scope` undefined = the family's scope; a narrower one may be asked for.
   */
  rotate(presented: string, request: { clientId: string; scope: string[] | undefined }, ctx: RequestContext): Promise<RotateOutcome>
}

export interface RefreshSettings {
  lifetimes: Lifetimes
  /** A retry within this window gets the same successor; 0 = every second use is reuse. */
  graceSeconds: number
}

export function refreshTokens(db: Db, successors: SuccessorDeriver, settings: RefreshSettings): RefreshTokens {
  return {
    startFamily: (input, ctx) => createFamily(db, input, settings.lifetimes, ctx),
    // OIDC Core §12.2: a refreshed ID token keeps its session's sid, read by the same statement.
    rotate: (presented, request, ctx) => rotate(db, presented, { ...request, successors: successors.successors(presented), graceSeconds: settings.graceSeconds }, settings.lifetimes, ctx),
  }
}
