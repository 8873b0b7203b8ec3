import type { FastifyInstance } from 'fastify'
import type { Services } from '../../services.js'
import { clearLoginThrottle } from '../../throttle/clear-throttle.js'
import { throttleState } from '../../throttle/login-throttle.store.js'
import { parseThrottleTarget, throttleView } from '../../throttle/throttle-view.js'
import { methodNotAllowed } from '../not-allowed.js'
import { requestContext } from '../params.js'
import { requireAdmin } from './guard.js'
import { adminQuery } from './query.js'
import { BEARER, errorResponses } from '../schemas/common.js'
import { ThrottleCleared, ThrottleQuery, ThrottleState } from '../schemas/admin.js'

/**
 * The password-check counters of an account (`?account=`) or an address (`?address=`): `GET`
 * shows them (locked or not, and for how long), `DELETE` clears them, audited
 * (README "Brute force and abuse").
 */
export function adminThrottleRoute(app: FastifyInstance, s: Services): void {
  app.get('/admin/throttle', {
    schema: {
      summary: 'Show the login-throttle counters of an account or an address',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { querystring: ThrottleQuery },
      response: { 200: ThrottleState, ...errorResponses(400, 401, 403, 503) },
    },
  }, async (req, reply) => {
    await requireAdmin(s, req)
    const target = parseThrottleTarget(adminQuery(req, ['account', 'address']))
    const now = s.clock.nowMs()
    const counters = (await throttleState(s.db, target)).map((row) => throttleView(row, now))
    return reply.header('cache-control', 'no-store').send({ ...target, locked: counters.some((c) => c.locked), counters })
  })
  app.delete('/admin/throttle', {
    schema: {
      summary: 'Clear the login-throttle counters of an account or an address',
      description: 'Audited (`login_throttle.cleared`).',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { querystring: ThrottleQuery },
      response: { 200: ThrottleCleared, ...errorResponses(400, 401, 403, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const target = parseThrottleTarget(adminQuery(req, ['account', 'address']))
    const cleared = await clearLoginThrottle(s.db, target, { ...requestContext(req), actor: { via: 'admin_api', clientId: admin.client_id } })
    req.log.warn({ ...target, cleared, admin_client_id: admin.client_id }, 'login throttle cleared')
    return reply.header('cache-control', 'no-store').send({ ...target, cleared })
  })
  methodNotAllowed(app, '/admin/throttle', ['GET', 'DELETE'])
}
