import type { FastifyInstance, FastifyRequest } from 'fastify'
import { bearerToken } from './bearer.js'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { liveTokenUser } from '../tokens/access-token-status.js'
import { methodNotAllowed } from './not-allowed.js'
import { profileClaims } from '../grants/profile-claims.js'
import { BEARER, errorResponses } from './schemas/common.js'
import { UserinfoResponse } from './schemas/oauth.js'

/** GET/POST /userinfo (OIDC Core §5.3): claims of the token's user; needs the `openid` scope. */
export function userinfoRoute(app: FastifyInstance, s: Services): void {
  const handler = async (req: FastifyRequest) => {
    const token = bearerToken(req)
    const claims = await s.tokens.verifyAccessToken(token, s.config.issuer).catch((e: OAuthError) => {
      throw e.withScheme('Bearer')
    })
    if (!claims.scope?.split(' ').includes('openid')) throw new OAuthError('insufficient_scope', 'the openid scope is required').withScheme('Bearer')
    // Revoked by /revoke, by logout, with its family on reuse detection, or its user or client disabled.
    const user = await liveTokenUser(s.db, s.clients, claims)
    if (!user) throw new OAuthError('invalid_token', 'the access token is invalid', 'revoked or no such user').withScheme('Bearer')
    // OIDC Core §5.4: profile claims by the token's scope.
    const extra = profileClaims({ name: user.name, email: user.email, emailVerified: user.email_verified }, (claims.scope ?? '').split(' '))
    return { sub: user.id, preferred_username: user.username, ...extra, ...(user.roles.length > 0 ? { roles: user.roles } : {}) }
  }
  const schema = (method: string) => ({
    summary: `User info (OIDC Core §5.3), by ${method}`,
    description: 'Claims of the access token’s user; the token needs the `openid` scope (`profile` and `email` add claims).',
    tags: ['oidc'],
    security: BEARER,
    response: { 200: UserinfoResponse, ...errorResponses(401, 403, 503) },
  })
  app.get('/userinfo', { schema: schema('GET') }, async (req, reply) => reply.header('cache-control', 'no-store').send(await handler(req)))
  app.post('/userinfo', { schema: schema('POST') }, async (req, reply) => reply.header('cache-control', 'no-store').send(await handler(req)))
  methodNotAllowed(app, '/userinfo', ['GET', 'POST'])
}
