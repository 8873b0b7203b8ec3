import type { FastifyInstance } from 'fastify'
import type { Services } from '../services.js'
import { accessTokenIsLive } from '../tokens/access-token-status.js'
import { authenticateClient } from './client-auth.js'
import { methodNotAllowed } from './not-allowed.js'
import { formParams } from './params.js'
import { OAuthError } from '../errors.js'

/**
 * POST /introspect (RFC 7662), for confidential clients. Access tokens only: anything that
 * is not a live access token of this server, or that another client holds and that does not
 * name the caller's client id in its audience, is `{"active": false}` and nothing more (§2.2).
 */
export function introspectRoute(app: FastifyInstance, s: Services): void {
  app.post('/introspect', async (req, reply) => {
    const params = formParams(req)
    const { client, method } = await authenticateClient(req, params, s.clients)
    // RFC 7662 §2.1: the caller must be authorised; a public client_id proves nothing.
    if (method === 'none') throw new OAuthError('invalid_client', 'client authentication failed', 'public client at introspection')
    const token = params.token
    if (token === undefined || token === '') throw new OAuthError('invalid_request', 'missing parameter: token')
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
    const inactive = { active: false }
    if (token.split('.').length !== 3) return reply.send(inactive)
    const claims = await s.tokens.verifyAccessToken(token, undefined).catch(() => undefined)
    if (!claims) return reply.send(inactive)
    // The caller learns about a token only if it holds it or is named in its audience by client id.
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
    const entitled = claims.client_id === client.id || aud.includes(client.id)
    if (!entitled) return reply.send(inactive)
    if (!(await accessTokenIsLive(s.db, s.clients, claims))) return reply.send(inactive)
    return reply.send({
      active: true,
      token_type: 'Bearer',
      scope: claims.scope,
      client_id: claims.client_id,
      sub: claims.sub,
      aud: claims.aud,
      iss: claims.iss,
      exp: claims.exp,
      iat: claims.iat,
      jti: claims.jti,
      ...(claims.sid ? { sid: claims.sid } : {}),
      ...(claims.roles ? { roles: claims.roles } : {}),
    })
  })
  methodNotAllowed(app, '/introspect', ['POST'])
}
