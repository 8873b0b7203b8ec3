import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { logout } from '../sessions/browser-session.js'
import { methodNotAllowed } from './not-allowed.js'
import { originOf } from './origin.js'
import { requestContext } from './params.js'
import { clearRefreshCookie, readRefreshCookie } from './refresh-cookie.js'

/** POST /logout: revokes the cookie's family and clears the cookie. */
export function logoutRoute(app: FastifyInstance, s: Services): void {
  app.post('/logout', async (req, reply) => {
    const token = readRefreshCookie(req, s.config)
    const outcome = await logout(s.db, s.clients, token, originOf(req), requestContext(req))
    clearRefreshCookie(reply, s.config)
    if (!outcome.known) throw new OAuthError('invalid_grant', 'refresh token is invalid', 'unknown cookie')
    if (outcome.revoked) s.metrics.refreshEvent('revoked', 'logout')
    return reply.header('cache-control', 'no-store').code(204).send()
  })
  methodNotAllowed(app, '/logout', ['POST'])
}
