import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.js'
import { sendError } from './error-handler.js'

/** Whether this instance serves: start-up done (database, schema, keys), or draining. */
export interface Readiness {
  /** Start-up is done: every route is open. Only start-up sets it, once. */
  ready: boolean
  /** SIGTERM: shutting down. */
  draining: boolean
  /** What start-up waits for, shown by `/readyz`: safe to show (no host, no password). */
  reason: string
}

/**
 * Routes that answer while the instance starts: they need neither the database nor the keys.
 * Discovery is not among them: it lists the algorithms of the loaded keys, and clients may cache
 * it for five minutes, so a document from before the keys were loaded would outlive start-up.
 */
export const OPEN_WHILE_STARTING = new Set(['/healthz', '/readyz', '/metrics'])

/**
 * Until start-up is done, every other route (and an unknown path) answers `503
 * temporarily_unavailable` with `Retry-After` and `Cache-Control: no-store`, before the body is
 * read or the database touched. Once ready, the cost per request is one boolean test.
 */
export function registerReadinessGate(app: FastifyInstance, readiness: Readiness): void {
  app.addHook('onRequest', (req, reply, done) => {
    if (readiness.ready || OPEN_WHILE_STARTING.has(req.routeOptions.url ?? '')) return done()
    // A hook that answers must not also continue.
    sendError(reply, new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable, retry later', 'starting'))
  })
}
