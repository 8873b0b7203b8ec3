import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { findFamilyByToken, revokeFamily } from '../tokens/refresh-tokens.store.js'
import { methodNotAllowed } from './not-allowed.js'
import { requireAllowedOrigin } from './origin.js'
import { requestContext } from './params.js'
import { clearRefreshCookie, readRefreshCookie } from './refresh-cookie.js'

/** POST /logout: revokes the cookie's family and clears the cookie. */
export function logoutRoute(app: FastifyInstance, s: Services): void {
  app.post('/logout', async (req, reply) => {
    const token = readRefreshCookie(req, s.config)
    const family = await findFamilyByToken(s.db, token)
    const client = family && (await s.clients.get(family.clientId))
    if (!family || !client) {
      clearRefreshCookie(reply, s.config)
      throw new OAuthError('invalid_grant', 'refresh token is invalid', 'unknown cookie')
    }
    // Forced-logout CSRF: only the app's own origin may end its session.
    requireAllowedOrigin(req, client)
    if (await revokeFamily(s.db, family.id, 'logout', requestContext(req))) s.metrics.refreshEvent('revoked', 'logout')
    clearRefreshCookie(reply, s.config)
    return reply.header('cache-control', 'no-store').code(204).send()
  })
  methodNotAllowed(app, '/logout', ['POST'])
}
