import type { Writable } from 'node:stream'
import fastifyCookie from '@fastify/cookie'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import { ClientCache } from './clients/client-cache.js'
import { systemClock, type Clock } from './clock.js'
import type { Config } from './config.js'
import type { DatabaseHandle } from './db/connect.js'
import { housekeepingJob } from './housekeeping/housekeeping.js'
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
import { Job, type JobDeps } from './jobs.js'
import { resolveKek, resolveKeks } from './keys/kek.js'
import { keySyncJob } from './keys/key-sync.js'
import { Keyring } from './keys/keyring.js'
import { ensureActiveKey } from './keys/lifecycle.js'
import { keyPolicy } from './keys/policy.js'
import { loggerOptions } from './logging.js'
import { Metrics } from './metrics.js'
import type { Services } from './services.js'
import { refreshTokens } from './tokens/refresh-tokens.js'
import { SuccessorDeriver } from './tokens/successor.js'
import { TokenIssuer } from './tokens/token-issuer.js'
import { PasswordHasher } from './users/passwords.js'
import { userLogin } from './users/user-login.js'

/** Routes whose successful requests are logged at debug level (see the onResponse hook). */
export const QUIET_ROUTES = new Set(['/.well-known/jwks.json', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/healthz', '/readyz', '/metrics'])

export interface BuildOptions {
  config: Config
  database: DatabaseHandle
  /** Where log lines go (tests capture them); stdout by default. */
  logStream?: Writable
  /** The clock of everything that reads the time or waits for it; tests pass one they move. */
  clock?: Clock
}

export interface Tessera {
  app: FastifyInstance
  services: Services
  /** The background jobs of this instance (they also run on demand). */
  jobs: { readonly keySync: Job; readonly housekeeping: Job }
  /** Drains in-flight requests, stops background work; the database is the caller's to close. */
  close(): Promise<void>
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

  const clock = opts.clock ?? systemClock
  const db = database.db
  const kek = resolveKek(config, (msg) => app.log.warn(msg))
  const keks = resolveKeks(config, kek)
  const policy = keyPolicy(config)
  const created = await ensureActiveKey(db, { keks, policy, nowMs: clock.nowMs() })
  if (created.created) {
    app.log.warn({ kid: created.created, alg: config.signingAlg }, config.env === 'production' ? 'no signing key existed: generated one' : 'DEVELOPMENT: generated a signing key (rotate it with `tessera keys rotate`)')
  }
  const metrics = new Metrics()
  const jobDeps: JobDeps = { clock, log: app.log, count: (job, outcome) => metrics.jobRun(job, outcome) }
  const keyring = new Keyring(db, keks, { policy, clock, log: app.log })
  const keySync = new Job(keySyncJob({ db, keyring, clock, log: app.log, refreshSeconds: config.cacheRefreshSeconds }), jobDeps)
  // Load the keys, and run a due schedule step (the standby of a first key) before serving.
  await keyring.reload()
  await keySync.run()
  if (!keyring.canSign()) {
    throw new Error('cannot decrypt the active signing key with KEY_ENCRYPTION_KEY (wrong key, or a tampered row): refusing to start')
  }

  const services: Services = {
    config,
    clock,
    db,
    keyring,
    clients: new ClientCache(db, config.cacheRefreshSeconds, clock),
    metrics,
    tokens: new TokenIssuer(keyring, config.issuer, config.accessTokenTtlSeconds, clock),
    // Retries across a KEK rotation still find the successor derived under a previous KEK.
    refreshTokens: refreshTokens(db, new SuccessorDeriver([keks.current, ...keks.previous]), {
      lifetimes: { idleSeconds: config.refreshTokenIdleTtlSeconds, absoluteSeconds: config.refreshTokenAbsoluteTtlSeconds },
      graceSeconds: config.refreshGraceSeconds,
    }),
    users: userLogin(db, new PasswordHasher(config.argon2)),
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
  const housekeeping = new Job(housekeepingJob(db, config, metrics, clock, app.log), jobDeps)
  keySync.start()
  housekeeping.start()
  return {
    app,
    services,
    jobs: { keySync, housekeeping },
    close: async () => {
      state.draining = true
      await Promise.all([keySync.stop(), housekeeping.stop()])
      await app.close()
    },
  }
}
