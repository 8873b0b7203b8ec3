import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { AuditContext } from '../../audit/context.js'
import { OAuthError } from '../../errors.js'
import type { Services } from '../../services.js'
import { parseLimit, parseSessionCursor, parseUserRef, parseUuid } from '../../sessions/params.js'
import { revokeAllSessions, revokeSession } from '../../sessions/revoke-sessions.js'
import { findSession, findUserRef, listSessions, SESSIONS_MAX_LIMIT } from '../../sessions/sessions.store.js'
import { methodNotAllowed } from '../not-allowed.js'
import { requestContext } from '../params.js'
import { requireAdmin } from './guard.js'
import { adminQuery } from './query.js'
import { BEARER, errorResponses, UserParams } from '../schemas/common.js'
import { FamilyParams, SessionsPage, SessionsQuery } from '../schemas/admin.js'
import { Type } from '@sinclair/typebox'

/** The user of a `{user}` path segment (a UUID is an id, anything else a username), or 404. */
async function userOf(s: Services, value: string) {
  const user = await findUserRef(s.db, parseUserRef(value))
  if (!user) throw new OAuthError('invalid_request', 'no such user').withStatus(404)
  return user
}

/** The audit context of an admin call: the request and the acting admin client. */
function adminContext(req: FastifyRequest, clientId: string): AuditContext {
  return { ...requestContext(req), actor: { via: 'admin_api', clientId } }
}

/**
 * The sessions admin API: a user's refresh-token families, listed and revoked one by one or
 * all at once. Every call needs an admin token (`requireAdmin`); revocations are audited with
 * reason `admin` and the acting admin client.
 */
export function adminSessionsRoute(app: FastifyInstance, s: Services): void {
  app.get<{ Params: { user: string } }>('/admin/users/:user/sessions', {
    schema: {
      summary: 'List a user’s sessions (refresh-token families)',
      description: 'Live sessions newest first (all with `include=all`), keyset pages via `cursor`.',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: UserParams, querystring: SessionsQuery },
      response: { 200: SessionsPage, ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    await requireAdmin(s, req)
    const q = adminQuery(req, ['include', 'limit', 'cursor'])
    if (q.include !== undefined && q.include !== 'all') throw new OAuthError('invalid_request', 'include must be all')
    const limit = q.limit === undefined ? undefined : parseLimit(q.limit, SESSIONS_MAX_LIMIT)
    const cursor = q.cursor === undefined ? undefined : parseSessionCursor(q.cursor)
    const user = await userOf(s, req.params.user)
    const page = await listSessions(s.db, user.id, { includeDead: q.include === 'all', ...(limit ? { limit } : {}), cursor })
    return reply.header('cache-control', 'no-store').send({ user: { id: user.id, username: user.username }, sessions: page.sessions, next_cursor: page.nextCursor })
  })

  // Logout everywhere.
  app.delete<{ Params: { user: string } }>('/admin/users/:user/sessions', {
    schema: {
      summary: 'Revoke all of a user’s sessions (logout everywhere)',
      description: 'Audited (`admin.sessions_revoked`) with the acting admin client.',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: UserParams },
      response: { 200: Type.Object({ revoked: Type.Integer({ description: 'How many sessions were revoked.' }) }), ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const user = await userOf(s, req.params.user)
    const revoked = await revokeAllSessions(s.db, user.id, adminContext(req, admin.client_id))
    s.metrics.refreshEvent('revoked', 'admin', revoked)
    return reply.header('cache-control', 'no-store').send({ revoked })
  })
  methodNotAllowed(app, '/admin/users/:user/sessions', ['GET', 'DELETE'])

  app.delete<{ Params: { familyId: string } }>('/admin/sessions/:familyId', {
    schema: {
      summary: 'Revoke one session',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: FamilyParams },
      response: { 200: Type.Object({ revoked: Type.Boolean({ description: 'False when it was already revoked or expired.' }) }), ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const familyId = parseUuid(req.params.familyId, 'the session id')
    if (!(await findSession(s.db, familyId))) throw new OAuthError('invalid_request', 'no such session').withStatus(404)
    const revoked = await revokeSession(s.db, familyId, adminContext(req, admin.client_id))
    if (revoked) s.metrics.refreshEvent('revoked', 'admin')
    return reply.header('cache-control', 'no-store').send({ revoked })
  })
  methodNotAllowed(app, '/admin/sessions/:familyId', ['DELETE'])
}
