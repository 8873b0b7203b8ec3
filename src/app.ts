import { join } from 'node:path'
import type { Writable } from 'node:stream'
import fastifyCookie from '@fastify/cookie'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import { ClientCache } from './clients/client-cache.js'
import type { Config } from './config.js'
import type { DatabaseHandle } from './db/connect.js'
import { Housekeeper } from './housekeeping.js'
import { adminAuditRoute } from './http/admin/audit.route.js'
import { adminKeysRoute } from './http/admin/keys.route.js'
import { adminSessionsRoute } from './http/admin/sessions.route.js'
import { registerCors } from './http/cors.js'
import { registerErrorHandler } from './http/error-handler.js'
import { healthRoute } from './http/health.route.js'
import { introspectRoute } from './http/introspect.route.js'
import { loginRoute } from './http/login.route.js'
import { logoutRoute } from './http/logout.route.js'
import { metricsRoute } from './http/metrics.route.js'
import { registerFormParser } from './http/params.js'
import { refreshRoute } from './http/refresh.route.js'
import { revokeRoute } from './http/revoke.route.js'
import { tokenRoute } from './http/token.route.js'
import { userinfoRoute } from './http/userinfo.route.js'
import { wellKnownRoute } from './http/well-known.route.js'
import { developmentKek, kekSet, parseKek, type Kek, type KekSet } from './keys/kek.js'
import { Keyring } from './keys/keyring.js'
import { ensureActiveKey } from './keys/keys.store.js'
import { keyPolicy } from './keys/policy.js'
import { loggerOptions } from './logging.js'
import { Metrics } from './metrics.js'
import type { Services } from './services.js'
import { SuccessorDeriver } from './tokens/successor.js'
import { PasswordHasher } from './users/passwords.js'

/** Routes whose successful requests are logged at debug level (see the onResponse hook). */
export const QUIET_ROUTES = new Set(['/.well-known/jwks.json', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/healthz', '/readyz', '/metrics'])

export interface BuildOptions {
  config: Config
  database: DatabaseHandle
  /** Where log lines go (tests capture them); stdout by default. */
  logStream?: Writable
  /** Milliseconds since the epoch; tests pass a controllable clock. */
  now?: () => number
}

export interface Tessera {
  app: FastifyInstance
  services: Services
  /** Drains in-flight requests, stops background work; the database is the caller's to close. */
  close(): Promise<void>
}

/** The key-encryption key: from the environment, or in development a generated key file. */
export function resolveKek(config: Config, warn: (msg: string) => void): Kek {
  if (config.keyEncryptionKey) return parseKek(config.keyEncryptionKey)
  if (config.env === 'production') throw new Error('KEY_ENCRYPTION_KEY is required in production')
  const file = join(config.dataDir, 'dev-key-encryption-key')
  const { kek, created } = developmentKek(file)
  if (created) warn(`DEVELOPMENT ONLY: generated a key-encryption key in ${file}; set KEY_ENCRYPTION_KEY in production`)
  return kek
}

/** The current KEK and the earlier ones (`KEY_ENCRYPTION_KEYS_PREVIOUS`) still accepted for decryption. */
export function resolveKeks(config: Config, current: Kek): KekSet {
  return kekSet(current, config.keyEncryptionKeysPrevious.map(parseKek))
}

/** Builds the HTTP app on an open, migrated database. */
export async function buildApp(opts: BuildOptions): Promise<Tessera> {
  const { config, database } = opts
  const state = { draining: false }
  const app = Fastify({
    logger: loggerOptions(config, opts.logStream),
    // Fastify's own two lines per request are replaced by one with the outcome (below).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    // A long header or URL is refused by Node's own limits; route params stay short.
    routerOptions: { maxParamLength: 256 },
    // Strings stay strings: `{"password": 123}` is refused, not coerced (ASVS 2.2.1).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  })

  const warn = (msg: string) => app.log.warn(msg)
  const kek = resolveKek(config, warn)
  const policy = keyPolicy(config)
  const created = await ensureActiveKey(database.db, config.signingAlg, kek, { now: (opts.now ?? Date.now)(), policy })
  if (created.created) {
    app.log.warn({ kid: created.created, alg: config.signingAlg }, config.env === 'production' ? 'no signing key existed: generated one' : 'DEVELOPMENT: generated a signing key (rotate it with `tessera keys rotate`)')
  }
  const keks = resolveKeks(config, kek)
  const keyring = new Keyring(database.db, keks, { policy, refreshSeconds: config.cacheRefreshSeconds, now: opts.now ?? Date.now, log: app.log })
  await keyring.start()
  if (!keyring.canSign()) {
    keyring.stop()
    throw new Error('cannot decrypt the active signing key with KEY_ENCRYPTION_KEY (wrong key, or a tampered row): refusing to start')
  }

  const services: Services = {
    config,
    db: database.db,
    keyring,
    clients: new ClientCache(database.db, config.cacheRefreshSeconds),
    hasher: new PasswordHasher(config.argon2),
    metrics: new Metrics(),
    // Retries across a KEK rotation still find the successor derived under a previous KEK.
    successors: new SuccessorDeriver([keks.current, ...keks.previous]),
    now: opts.now ?? Date.now,
  }

  // Cookies are parsed only where they are read (/refresh, /logout), not on every request.
  await app.register(fastifyCookie, { hook: false })
  registerFormParser(app)
  // sendError counts every error it answers through this.
  app.decorate('metrics', services.metrics)
  registerErrorHandler(app)
  registerCors(app, services)

  // One log line per request, with its outcome; never the query string, headers or body.
  // Successful hits of the public, machine-polled routes (JWKS, discovery, probes, scrapes) are
  // logged at debug: at info they would be most of the log and a sizeable share of their cost.
  app.addHook('onResponse', (req, reply, done) => {
    const line = { method: req.method, path: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) }
    if (reply.statusCode < 400 && QUIET_ROUTES.has(req.routeOptions.url ?? '')) req.log.debug(line, 'request')
    else req.log.info(line, 'request')
    services.metrics.observeRequest(req.method, req.routeOptions.url, reply.statusCode, reply.elapsedTime)
    done()
  })

  wellKnownRoute(app, services)
  healthRoute(app, services, state)
  tokenRoute(app, services)
  loginRoute(app, services)
  refreshRoute(app, services)
  revokeRoute(app, services)
  introspectRoute(app, services)
  userinfoRoute(app, services)
  logoutRoute(app, services)
  metricsRoute(app, services)
  adminSessionsRoute(app, services)
  adminAuditRoute(app, services)
  adminKeysRoute(app, services)

  await app.ready()
  const housekeeper = new Housekeeper(database.db, config, services.metrics, app.log)
  housekeeper.start()
  return {
    app,
    services,
    close: async () => {
      state.draining = true
      keyring.stop()
      await housekeeper.stop()
      await app.close()
    },
  }
}
