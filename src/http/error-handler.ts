import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify'
import { databaseErrorCode, InputError, isDatabaseUnavailable, OAuthError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { SHED_DETAIL } from '../users/passwords.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Set by buildApp; sendError counts the errors it answers. */
    metrics?: Metrics
  }
}

/** Maps anything thrown to an OAuthError; unknown errors never leak their message. */
export function toOAuthError(err: unknown): OAuthError {
  if (err instanceof OAuthError) return err
  if (err instanceof InputError) return new OAuthError('invalid_request', err.message)
  if (isDatabaseUnavailable(err)) return new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable, retry later', 'database unavailable')
  const fe = err as Partial<FastifyError> & { validation?: unknown }
  if (fe.validation) return new OAuthError('invalid_request', `invalid request: ${fe.message ?? 'bad input'}`)
  // RFC 6749 §5.2 has no code for these: the body says invalid_request. A content type that no
  // parser takes is a 400 like any other malformed request (not 415), so that every refusal of a
  // body at the OAuth endpoints is the same RFC 6749 §5.2 answer.
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new OAuthError('invalid_request', 'the request body is too large').withStatus(413)
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new OAuthError('invalid_request', 'unsupported content type')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new OAuthError('invalid_request', 'the request body is malformed')
  }
  // PostgreSQL refuses NUL bytes and invalid UTF-8 in text: that is bad input, not a server fault.
  if (fe.code === '22021' || fe.code === '22P05') return new OAuthError('invalid_request', 'the request contains invalid characters')
  // A date or time PostgreSQL cannot represent (out of range, malformed) came from the request.
  if (fe.code === '22007' || fe.code === '22008') return new OAuthError('invalid_request', 'the request contains an invalid date or time')
  if (fe.statusCode === 400) return new OAuthError('invalid_request', 'the request is malformed')
  if (fe.statusCode === 414) return new OAuthError('invalid_request', 'the request URL is too long').withStatus(414)
  if (fe.statusCode === 413) return new OAuthError('invalid_request', 'the request body is too large').withStatus(413)
  if (fe.statusCode === 415) return new OAuthError('invalid_request', 'unsupported content type')
  return new OAuthError('server_error', 'internal server error')
}

/** Writes an OAuthError as RFC 6749 §5.2 / RFC 6750 §3 JSON. The one place errors become HTTP. */
export function sendError(reply: FastifyReply, e: OAuthError): FastifyReply {
  reply.server.metrics?.oauthError(e.code)
  reply.code(e.status).header('cache-control', 'no-store').header('pragma', 'no-cache')
  if (e.status === 503 || e.status === 429) reply.header('retry-after', String(e.retryAfterSeconds ?? 5))
  if (e.code === 'invalid_client' && e.authScheme === 'Basic') reply.header('www-authenticate', 'Basic realm="tessera", charset="UTF-8"')
  if (e.authScheme === 'Bearer') {
    // RFC 6750 §3: no error code when the request carried no token at all.
    const params = e.detail === 'no token' ? 'realm="tessera"' : `realm="tessera", error="${e.code}", error_description="${e.description}"`
    reply.header('www-authenticate', `Bearer ${params}`)
  }
  return reply.send({ error: e.code, error_description: e.description })
}

export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err, req, reply) => {
    const e = toOAuthError(err)
    // Shed load (a full argon2id queue) is the server working as designed: not logged as an error.
    if (e.status >= 500 && e.detail !== SHED_DETAIL) {
      // Full detail in the log only; the original error is logged for server errors alone, a
      // database's SQLSTATE (a deadlock, a lock timeout, a refused connection) with its 503s.
      req.log.error({ code: e.code, detail: e.detail, dbCode: e.detail === 'database unavailable' ? databaseErrorCode(err) : undefined, err: e.code === 'server_error' ? err : undefined }, 'request failed')
    } else {
      req.log.info({ code: e.code, detail: e.detail }, 'oauth error')
    }
    return sendError(reply, e)
  })
  app.setNotFoundHandler((req, reply) => sendError(reply, new OAuthError('invalid_request', 'no such endpoint').withStatus(404)))
}
