import type { Writable } from 'node:stream'
import pino from 'pino'
import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'

/**
 * Paths pino censors in a log object: a safety net, since request lines carry no headers or
 * bodies at all. Explicit paths, no wildcards: wildcard redaction costs on every log line.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'body.password',
  'body.client_secret',
  'body.refresh_token',
  'body.token',
  'password',
  'client_secret',
  'refresh_token',
  'access_token',
  'token',
]

/** pino options: JSON lines, secrets censored, requests reduced to method, path and address. */
export function loggerOptions(config: Config, stream?: Writable): NonNullable<FastifyServerOptions['logger']> {
  return {
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // The query string can hold credentials (a misused ?refresh_token=): log the path only.
      req: (req: { method: string; url: string; ip?: string }) => ({ method: req.method, path: req.url.split('?')[0], ip: req.ip }),
      res: (res: { statusCode: number }) => ({ status: res.statusCode }),
    },
    // Asynchronous stdout: a busy server coalesces lines instead of one write(2) per request;
    // pino flushes what is buffered when the process exits.
    stream: stream ?? pino.destination({ dest: 1, sync: false }),
  }
}
