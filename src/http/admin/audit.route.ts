import type { FastifyInstance } from 'fastify'
import { listAuditEvents } from '../../audit/audit.store.js'
import { OAuthError } from '../../errors.js'
import type { Services } from '../../services.js'
import { parseAuditFilter, parseUserRef } from '../../sessions/params.js'
import { findUserRef } from '../../sessions/sessions.store.js'
import { methodNotAllowed } from '../not-allowed.js'
import { requireAdmin } from './guard.js'
import { adminQuery } from './query.js'
import { BEARER, errorResponses } from '../schemas/common.js'
import { AuditPage, AuditQuery } from '../schemas/admin.js'

/**
 * GET /admin/audit: the audit trail, newest first, filtered by type (exact or a prefix ending
 * in a dot), user (id or username), family, client and time; keyset pages via `cursor`.
 */
export function adminAuditRoute(app: FastifyInstance, s: Services): void {
  app.get('/admin/audit', {
    schema: {
      summary: 'Read the audit trail',
      description: 'Newest first, filtered by type, user, session, client and time; keyset pages via `cursor`. 404 when `user` names no user.',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { querystring: AuditQuery },
      response: { 200: AuditPage, ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    await requireAdmin(s, req)
    const q = adminQuery(req, ['type', 'user', 'family', 'client', 'since', 'until', 'limit', 'cursor'])
    const filter = parseAuditFilter(q, (name) => name)
    if (q.user !== undefined) {
      const ref = parseUserRef(q.user)
      // An id filters as is (events outlive users); a username must name a user.
      if ('id' in ref) filter.userId = ref.id
      else {
        const user = await findUserRef(s.db, ref)
        if (!user) throw new OAuthError('invalid_request', 'no such user').withStatus(404)
        filter.userId = user.id
      }
    }
    const page = await listAuditEvents(s.db, filter)
    return reply.header('cache-control', 'no-store').send({ events: page.events, next_cursor: page.nextCursor })
  })
  methodNotAllowed(app, '/admin/audit', ['GET'])
}
