import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { revokeToken } from '../tokens/revoke-token.js'
import { authenticateClient } from './client-auth.js'
import { methodNotAllowed } from './not-allowed.js'
import { formParams, requestContext } from './params.js'

/**
 * POST /revoke (RFC 7009): the caller's refresh token revokes its whole family, its access token
 * is denylisted until it expires (`revokeToken`). Whatever the token, the answer is 200 (§2.2).
 */
export function revokeRoute(app: FastifyInstance, s: Services): void {
  app.post('/revoke', async (req, reply) => {
    const params = formParams(req)
    const { client } = await authenticateClient(req, params, s.clients)
    const token = params.token
    if (token === undefined || token === '') throw new OAuthError('invalid_request', 'missing parameter: token')
    if ((await revokeToken(s.db, s.tokens, client, token, requestContext(req))) === 'family') s.metrics.refreshEvent('revoked', 'revoke_endpoint')
    return reply.header('cache-control', 'no-store').code(200).send()
  })
  methodNotAllowed(app, '/revoke', ['POST'])
}
