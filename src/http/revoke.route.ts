import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { revokeToken } from '../tokens/revoke-token.js'
import { authenticateClient } from './client-auth.js'
import { methodNotAllowed } from './not-allowed.js'
import { formParams, requestContext } from './params.js'
import { CLIENT_AUTH, errorResponses, NoBody } from './schemas/common.js'
import { RevokeRequest } from './schemas/oauth.js'

/**
 * POST /revoke (RFC 7009): the caller's refresh token revokes its whole family, its access token
 * is denylisted until it expires (`revokeToken`). Whatever the token, the answer is 200 (§2.2).
 */
export function revokeRoute(app: FastifyInstance, s: Services): void {
  app.post('/revoke', {
    schema: {
      summary: 'Revoke a token (RFC 7009)',
      description: 'A refresh token revokes its whole family; an access token is denylisted until it expires. Any token, even unknown, answers 200 (§2.2).',
      tags: ['oauth'],
      security: CLIENT_AUTH,
      consumes: ['application/x-www-form-urlencoded'],
      documentOnly: { body: RevokeRequest },
      response: { 200: NoBody('Revoked, or nothing to revoke.'), ...errorResponses(400, 401, 413, 503) },
    },
  }, async (req, reply) => {
    const params = formParams(req)
    const { client } = await authenticateClient(req, params, s.clients)
    const token = params.token
    if (token === undefined || token === '') throw new OAuthError('invalid_request', 'missing parameter: token')
    if ((await revokeToken(s.db, s.tokens, client, token, requestContext(req))) === 'family') s.metrics.refreshEvent('revoked', 'revoke_endpoint')
    return reply.header('cache-control', 'no-store').code(200).send()
  })
  methodNotAllowed(app, '/revoke', ['POST'])
}
