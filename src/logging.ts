import type { Writable } from 'node:stream'
import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'

/** Paths pino censors wherever they appear in a log object. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  '*.password',
  '*.client_secret',
  '*.refresh_token',
  '*.access_token',
  '*.id_token',
  '*.token',
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
    ...(stream ? { stream } : {}),
  }
}
