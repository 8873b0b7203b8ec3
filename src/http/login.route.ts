import type { FastifyInstance } from 'fastify'
import { requireAllowedOrigin } from '../clients/client.js'
import { OAuthError } from '../errors.js'
import { busyError } from '../users/passwords.js'
import { passwordLogin } from '../grants/password.js'
import { grantDeps, type Services } from '../services.js'
import { authenticateClient } from './client-auth.js'
import { methodNotAllowed } from './not-allowed.js'
import { originOf } from './origin.js'
import { requestContext } from './params.js'
import { sendTokens } from './respond.js'
import { errorResponses } from './schemas/common.js'
import { LoginRequest, TokenResponse } from './schemas/oauth.js'


/** POST /login: first-party password login (JSON or form) → token response. */
export function loginRoute(app: FastifyInstance, s: Services): void {
  // Load shedding before the body is even parsed: a flood of logins costs as little as possible
  // (the check itself reserves its place again, after client authentication).
  const shedWhenSaturated = (_req: unknown, _reply: unknown, done: (err?: Error) => void) => {
    if (!s.passwords.saturated()) return done()
    s.metrics.passwordCheckShed()
    done(busyError())
  }
  app.post('/login', {
    schema: {
      summary: 'First-party password login',
      description: 'For first-party clients: JSON or form body. A cookie client gets its refresh token as an HttpOnly cookie (and must send an allowed `Origin`). Throttled like every password check.',
      tags: ['first-party'],
      consumes: ['application/json', 'application/x-www-form-urlencoded'],
      // Validated: every field a string, so objects like {"$ne": null}, arrays, numbers and null are refused (ASVS 2.2.1).
      body: LoginRequest,
      response: { 200: TokenResponse, ...errorResponses(400, 401, 403, 413, 429, 503) },
    },
    onRequest: shedWhenSaturated,
  }, async (req, reply) => {
    if (req.url.includes('?')) throw new OAuthError('invalid_request', 'credentials must be sent in the request body, not the URL')
    const body = req.body as Record<string, string>
    const params: Record<string, string> = { client_id: body.client_id! }
    if (body.client_secret !== undefined) params.client_secret = body.client_secret
    const { client } = await authenticateClient(req, params, s.clients)
    // Login CSRF: a cookie session may only be started from the app's own origin.
    if (client.refreshDelivery === 'cookie') requireAllowedOrigin(client, originOf(req))
    const tokens = await passwordLogin(grantDeps(s, requestContext(req)), client, body.username!, body.password!, body.scope || undefined)
    s.metrics.tokenIssued('login')
    return sendTokens(reply, s, client, tokens)
  })
  methodNotAllowed(app, '/login', ['POST'])
}
