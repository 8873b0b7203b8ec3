import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { logout } from '../sessions/browser-session.js'
import { methodNotAllowed } from './not-allowed.js'
import { originOf } from './origin.js'
import { requestContext } from './params.js'
import { clearRefreshCookie, readRefreshCookie } from './refresh-cookie.js'
import { errorResponses, NoBody } from './schemas/common.js'
import { RefreshCookie } from './schemas/oauth.js'

/** POST /logout: revokes the cookie's family and clears the cookie. */
export function logoutRoute(app: FastifyInstance, s: Services): void {
  app.post('/logout', {
    schema: {
      summary: 'Browser logout: revoke the cookie’s session',
      description: 'Revokes the refresh cookie’s family and clears the cookie.',
      tags: ['first-party'],
      documentOnly: { cookies: RefreshCookie(s.config.cookieName) },
      response: { 204: NoBody('Logged out; the cookie is cleared.'), ...errorResponses(400, 403, 503) },
    },
  }, async (req, reply) => {
    const token = readRefreshCookie(req, s.config)
    const outcome = await logout(s.db, s.clients, token, originOf(req), requestContext(req))
    clearRefreshCookie(reply, s.config)
    if (!outcome.known) throw new OAuthError('invalid_grant', 'refresh token is invalid', 'unknown cookie')
    if (outcome.revoked) s.metrics.refreshEvent('revoked', 'logout')
    return reply.header('cache-control', 'no-store').code(204).send()
  })
  methodNotAllowed(app, '/logout', ['POST'])
}
