import type { FastifyInstance } from 'fastify'
import { recordEvent } from '../audit/audit.store.js'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { verifyAccessToken } from '../tokens/access-token.js'
import { looksLikeRefreshToken } from '../tokens/refresh-token.js'
import { findFamilyByToken, revokeFamily } from '../tokens/refresh-tokens.store.js'
import { denylistAccessToken } from '../tokens/revoked-access-tokens.store.js'
import { authenticateClient } from './client-auth.js'
import { methodNotAllowed } from './not-allowed.js'
import { formParams, requestContext } from './params.js'

/**
 * POST /revoke (RFC 7009). A refresh token revokes its whole family; an access token is
 * denylisted by `jti` until it expires. Unknown, invalid, expired and other clients' tokens
 * get 200 and change nothing (§2.2), so the endpoint reveals nothing about them.
 */
export function revokeRoute(app: FastifyInstance, s: Services): void {
  app.post('/revoke', async (req, reply) => {
    const params = formParams(req)
    const { client } = await authenticateClient(req, params, s.clients)
    const token = params.token
    if (token === undefined || token === '') throw new OAuthError('invalid_request', 'missing parameter: token')
    const ctx = requestContext(req)
    // The hint is only an optimisation (§2.1): we recognise both kinds by shape.
    if (looksLikeRefreshToken(token)) {
      const family = await findFamilyByToken(s.db, token)
      if (family && family.clientId === client.id && (await revokeFamily(s.db, family.id, 'revoked_by_client', ctx))) s.metrics.refreshEvent('revoked', 'revoke_endpoint')
    } else if (token.split('.').length === 3) {
      const claims = await verifyAccessToken(s.keyring, s.config.issuer, undefined, token, Math.floor(s.now() / 1000)).catch(() => undefined)
      if (claims && claims.client_id === client.id) {
        if (await denylistAccessToken(s.db, claims.jti, claims.exp)) await recordEvent(s.db, { type: 'access_token.revoked', clientId: client.id, familyId: claims.sid, ...ctx, detail: { jti: claims.jti } })
      }
    }
    return reply.header('cache-control', 'no-store').code(200).send()
  })
  methodNotAllowed(app, '/revoke', ['POST'])
}
