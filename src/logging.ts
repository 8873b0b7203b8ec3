import { createRequire } from 'node:module'
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

type PrettyFactory = (options: Record<string, unknown>) => Writable

/**
 * pino-pretty's stream, when installed: a development dependency, absent from the production
 * image (`npm ci --omit=dev`). Loaded here only, and only when readable lines are asked for.
 */
function prettyStream(): Writable | undefined {
  let factory: PrettyFactory
  try {
    factory = createRequire(import.meta.url)('pino-pretty') as PrettyFactory
  } catch {
    return undefined
  }
  // Same process (no worker thread): a development server writes few lines.
  return factory({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: false, sync: true })
}

/** Where log lines go, and what a reader should know about that choice (logged once at start). */
export function logDestination(config: Config, stream?: Writable): { stream: pino.DestinationStream; note?: string } {
  // A given stream (tests, embedding) always gets JSON lines: they are parsed.
  if (stream) return { stream }
  if (config.logFormat === 'pretty') {
    const pretty = prettyStream()
    if (pretty) return { stream: pretty }
    return { stream: pino.destination({ dest: 1, sync: false }), note: 'LOG_FORMAT: pino-pretty is not installed (a development dependency), so log lines stay JSON' }
  }
  // Asynchronous stdout: a busy server coalesces lines instead of one write(2) per request;
  // pino flushes what is buffered when the process exits.
  return { stream: pino.destination({ dest: 1, sync: false }) }
}

/** pino options: secrets censored, requests reduced to method, path and address; JSON unless `LOG_FORMAT` says pretty. */
export function loggerOptions(config: Config, stream: pino.DestinationStream): NonNullable<FastifyServerOptions['logger']> {
  return {
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // The query string can hold credentials (a misused ?refresh_token=): log the path only.
      req: (req: { method: string; url: string; ip?: string }) => ({ method: req.method, path: req.url.split('?')[0], ip: req.ip }),
      res: (res: { statusCode: number }) => ({ status: res.statusCode }),
    },
    stream,
  }
}
