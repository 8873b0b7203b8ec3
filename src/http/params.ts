import type { FastifyInstance, FastifyRequest } from 'fastify'
import { OAuthError } from '../errors.js'
import type { RequestContext } from '../audit/context.js'

const MAX_PARAMS = 100

/** Parses a form body; a parameter sent twice is an error (RFC 6749 §3.2). */
export function parseForm(body: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null)
  let count = 0
  for (const [key, value] of new URLSearchParams(body)) {
    if (++count > MAX_PARAMS) throw new OAuthError('invalid_request', 'too many parameters')
    if (Object.hasOwn(out, key)) throw new OAuthError('invalid_request', `parameter sent more than once: ${key.slice(0, 64)}`)
    out[key] = value
  }
  return out
}

/** Registers the form parser (fastify parses JSON itself, safely against `__proto__`). */
export function registerFormParser(app: FastifyInstance): void {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (req, body, done) => {
    const charset = /;\s*charset=([^;]+)/i.exec(req.headers['content-type'] ?? '')?.[1]?.trim().replace(/"/g, '').toLowerCase()
    if (charset && charset !== 'utf-8' && charset !== 'utf8') return done(new OAuthError('invalid_request', 'only UTF-8 form bodies are accepted'), undefined)
    try {
      done(null, parseForm(body as string))
    } catch (err) {
      done(err as Error, undefined)
    }
  })
}

/** True when the request's body was a form. */
export function isForm(req: FastifyRequest): boolean {
  return /^application\/x-www-form-urlencoded(\s*;|$)/i.test(req.headers['content-type'] ?? '')
}

/**
 * The parameters of an OAuth endpoint: a form body only (RFC 6749 §3.2), nothing in the
 * query string (credentials there would end up in logs and histories).
 */
export function formParams(req: FastifyRequest): Record<string, string> {
  if (!isForm(req)) throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded')
  if (req.url.includes('?')) throw new OAuthError('invalid_request', 'parameters must be sent in the request body, not the URL')
  // No body at all (a HEAD, or a POST with the header but nothing after it) is no parameters.
  return (req.body ?? {}) as Record<string, string>
}

/** Client address and user agent, for audit and the family's "last used". */
export function requestContext(req: FastifyRequest): RequestContext {
  const ua = req.headers['user-agent']
  return { ip: req.ip, userAgent: typeof ua === 'string' ? ua : undefined }
}
