import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { introspectToken } from '../tokens/introspect-token.js'
import { authenticateClient } from './client-auth.js'
import { methodNotAllowed } from './not-allowed.js'
import { formParams } from './params.js'
import { CLIENT_AUTH, errorResponses } from './schemas/common.js'
import { IntrospectRequest, IntrospectResponse } from './schemas/oauth.js'

/**
 * POST /introspect (RFC 7662), for confidential clients: a live access token the caller holds or
 * whose audience names it, or a live refresh token the caller holds, is active with its claims;
 * anything else is `{"active": false}` and nothing more (§2.2). See `introspectToken`.
 */
export function introspectRoute(app: FastifyInstance, s: Services): void {
  app.post('/introspect', {
    schema: {
      summary: 'Introspect a token (RFC 7662)',
      description: 'For confidential clients. A live token the caller may see is active with its claims; anything else is `{"active": false}`.',
      tags: ['oauth'],
      security: CLIENT_AUTH,
      consumes: ['application/x-www-form-urlencoded'],
      documentOnly: { body: IntrospectRequest },
      response: { 200: IntrospectResponse, ...errorResponses(400, 401, 413, 503) },
    },
  }, async (req, reply) => {
    const params = formParams(req)
    const { client, method } = await authenticateClient(req, params, s.clients)
    // RFC 7662 §2.1: the caller must be authorised; a public client_id proves nothing.
    if (method === 'none') throw new OAuthError('invalid_client', 'client authentication failed', 'public client at introspection')
    const token = params.token
    if (token === undefined || token === '') throw new OAuthError('invalid_request', 'missing parameter: token')
    const result = await introspectToken({ db: s.db, tokens: s.tokens, clients: s.clients }, client, token, params.token_type_hint)
    return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(result)
  })
  methodNotAllowed(app, '/introspect', ['POST'])
}
