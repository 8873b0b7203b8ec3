import type { RequestContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { familyUser, listSessions, type ListSessionsOptions, type Session } from '../sessions/sessions.store.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'

/** One of the caller's own sessions, as `GET /account/sessions` shows it. */
export type AccountSession = Omit<Session, 'state' | 'revoked_at' | 'revoked_reason'> & { current: boolean }

/** The user's live sessions (refresh-token families), newest first; `current` marks the caller's own. */
export async function accountSessions(db: Db, userId: string, currentFamilyId: string | undefined, opts: Pick<ListSessionsOptions, 'limit' | 'cursor'>): Promise<{ sessions: AccountSession[]; nextCursor: string | null }> {
  const page = await listSessions(db, userId, opts)
  return {
    sessions: page.sessions.map(({ state: _state, revoked_at: _at, revoked_reason: _reason, ...rest }) => ({ ...rest, current: rest.id === currentFamilyId })),
    nextCursor: page.nextCursor,
  }
}

/**
 * Revokes one of the user's own sessions (reason `revoked_by_user`, audited as
 * `refresh_token.revoked`). `not_found` when the family does not exist or is another user's
 * (the caller cannot tell the two apart); `revoked: false` when it was revoked already.
 */
export async function revokeAccountSession(db: Db, userId: string, familyId: string, ctx: RequestContext): Promise<'not_found' | { revoked: boolean }> {
  return db.transaction().execute(async (trx) => {
    if ((await familyUser(trx, familyId)) !== userId) return 'not_found' as const
    const revoked = await revokeFamilies(trx, { familyId }, 'revoked_by_user', ctx)
    return { revoked: revoked.length === 1 }
  })
}
