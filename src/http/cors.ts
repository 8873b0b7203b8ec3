import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Services } from '../services.js'

const CREDENTIALED = new Set(['/login', '/refresh', '/logout', '/token', '/userinfo', '/revoke'])

/** The self-service account API (docs/account.md), which browser apps call with a bearer token. */
const isAccountPath = (path: string) => path === '/account' || path.startsWith('/account/')

/**
 * CORS for browser apps: an origin some client lists gets its own origin echoed back with
 * credentials (never `*` with credentials); any other origin gets no CORS headers at all.
 * The list is cached for `cacheRefreshSeconds` (ClientCache).
 */
export function registerCors(app: FastifyInstance, s: Services): void {
  // Callback style: most requests carry no Origin and leave at once, without a promise.
  app.addHook('onRequest', (req, reply, done) => {
    const origin = req.headers.origin
    if (origin === undefined) return done()
    const path = req.url.split('?')[0]!
    if (!(CREDENTIALED.has(path) || isAccountPath(path))) return done()
    s.clients.originAllowed(origin).then((ok) => {
      // A preflight is answered here; a hook that answers must not also continue.
      if (!(ok && answered(req, reply, origin))) done()
    }, done)
  })
  /** Adds the CORS headers; answers a preflight itself and says so. */
  function answered(req: FastifyRequest, reply: FastifyReply, origin: string): boolean {
    reply.header('access-control-allow-origin', origin).header('access-control-allow-credentials', 'true').header('vary', 'Origin')
    if (req.method !== 'OPTIONS') return false
    reply
      .code(204)
      .header('access-control-allow-methods', isAccountPath(req.url.split('?')[0]!) ? 'GET, POST, DELETE' : 'GET, POST')
      .header('access-control-allow-headers', 'authorization, content-type')
      .header('access-control-max-age', '600')
      .send()
    return true
  }
}
