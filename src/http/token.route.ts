import type { FastifyInstance } from 'fastify'
import { requireAllowedOrigin, type Client } from '../clients/client.js'
import { OAuthError } from '../errors.js'
import type { GrantType } from '../grants/grant-types.js'
import { grantFor } from '../grants/index.js'
import { grantDeps, type Services } from '../services.js'
import { authenticateClient } from './client-auth.js'
import { methodNotAllowed } from './not-allowed.js'
import { originOf } from './origin.js'
import { formParams, requestContext } from './params.js'
import { sendTokens } from './respond.js'
import { CLIENT_AUTH, errorResponses } from './schemas/common.js'
import { TokenRequest, TokenResponse } from './schemas/oauth.js'

/** The client's share of this instance (README "Brute force and abuse"): 429 + Retry-After beyond it. */
function takeClientRate(s: Services, client: Client): void {
  try {
    s.clientRateLimit.take(client.id, client.rateLimitPerSecond)
  } catch (err) {
    s.metrics.clientRateLimited()
    throw err
  }
}

/** POST /token (RFC 6749 §3.2): authenticate the client, check the grant is allowed, run it. */
export function tokenRoute(app: FastifyInstance, s: Services): void {
  app.post('/token', {
    schema: {
      summary: 'Issue tokens (RFC 6749 §3.2)',
      description: 'Runs the grant named by `grant_type` for the authenticated client. The form body only: nothing in the query string, no parameter twice.',
      tags: ['oauth'],
      security: CLIENT_AUTH,
      consumes: ['application/x-www-form-urlencoded'],
      documentOnly: { body: TokenRequest },
      response: { 200: TokenResponse, ...errorResponses(400, 401, 403, 413, 429, 503) },
    },
  }, async (req, reply) => {
    const params = formParams(req)
    const grantType = params.grant_type
    if (grantType === undefined || grantType === '') throw new OAuthError('invalid_request', 'missing parameter: grant_type')
    const { client } = await authenticateClient(req, params, s.clients)
    takeClientRate(s, client)
    const grant = grantFor(grantType)
    if (!grant) throw new OAuthError('unsupported_grant_type', `unsupported grant_type: ${grantType.slice(0, 64)}`)
    if (!client.grantTypes.includes(grantType as GrantType)) throw new OAuthError('unauthorized_client', `this client may not use ${grantType}`)
    // Browser clients get a cookie from here too: same login-CSRF guard as /login.
    if (client.refreshDelivery === 'cookie') requireAllowedOrigin(client, originOf(req))
    const tokens = await grant(params, client, grantDeps(s, requestContext(req)))
    s.metrics.tokenIssued(grantType as GrantType)
    return sendTokens(reply, s, client, tokens)
  })
  methodNotAllowed(app, '/token', ['POST'])
}
