import type { FastifyInstance } from 'fastify'
import { requireAllowedOrigin } from '../clients/client.js'
import { OAuthError } from '../errors.js'
import { refreshTokenGrant } from '../grants/refresh-token.js'
import { grantDeps, type Services } from '../services.js'
import { findCookieSession } from '../sessions/browser-session.js'
import { methodNotAllowed } from './not-allowed.js'
import { originOf } from './origin.js'
import { requestContext } from './params.js'
import { readRefreshCookie } from './refresh-cookie.js'
import { sendTokens } from './respond.js'
import { errorResponses } from './schemas/common.js'
import { RefreshCookie, TokenResponse } from './schemas/oauth.js'

/** POST /refresh: browser refresh from the HttpOnly cookie; the cookie follows the rotation. */
export function refreshRoute(app: FastifyInstance, s: Services): void {
  app.post('/refresh', {
    schema: {
      summary: 'Browser refresh from the HttpOnly cookie',
      description: 'Rotates the refresh cookie (a new `Set-Cookie`) and answers new tokens; no body. Needs an allowed `Origin`.',
      tags: ['first-party'],
      documentOnly: { cookies: RefreshCookie(s.config.cookieName) },
      response: { 200: TokenResponse, ...errorResponses(400, 401, 403, 429, 503) },
    },
  }, async (req, reply) => {
    const token = readRefreshCookie(req, s.config)
    const client = (await findCookieSession(s.db, s.clients, token))?.client
    if (!client || client.disabled || client.refreshDelivery !== 'cookie' || !client.grantTypes.includes('refresh_token')) throw new OAuthError('invalid_grant', 'refresh token is invalid', 'no cookie family')
    requireAllowedOrigin(client, originOf(req))
    // A loser of a concurrent refresh gets an error and no Set-Cookie, so the winner's cookie stays.
    const tokens = await refreshTokenGrant({ refresh_token: token }, client, grantDeps(s, requestContext(req)))
    s.metrics.tokenIssued('refresh_token')
    return sendTokens(reply, s, client, tokens)
  })
  methodNotAllowed(app, '/refresh', ['POST'])
}
