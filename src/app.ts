import type { Writable } from 'node:stream'
import fastifyCookie from '@fastify/cookie'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import { ClientCache } from './clients/client-cache.js'
import { systemClock, type Clock } from './clock.js'
import type { Config } from './config.js'
import type { DatabaseHandle } from './db/connect.js'
import { housekeepingJob } from './housekeeping/housekeeping.js'
import { accountRoutes } from './http/account.route.js'
import { adminAuditRoute } from './http/admin/audit.route.js'
import { adminKeysRoute } from './http/admin/keys.route.js'
import { adminClientsRoute } from './http/admin/clients.route.js'
import { adminSessionsRoute } from './http/admin/sessions.route.js'
import { adminThrottleRoute } from './http/admin/throttle.route.js'
import { adminUsersRoute } from './http/admin/users.route.js'
import { registerCors } from './http/cors.js'
import { registerErrorHandler, sendError, toOAuthError } from './http/error-handler.js'
import { healthRoute } from './http/health.route.js'
import { introspectRoute } from './http/introspect.route.js'
import { loginRoute } from './http/login.route.js'
import { logoutRoute } from './http/logout.route.js'
import { metricsRoute } from './http/metrics.route.js'
import { registerOpenApi } from './http/openapi.js'
import { openApiRoute } from './http/openapi.route.js'
import { registerFormParser } from './http/params.js'
import { registerReadinessGate, type Readiness } from './http/readiness.js'
import { refreshRoute } from './http/refresh.route.js'
import { revokeRoute } from './http/revoke.route.js'
import { tokenRoute } from './http/token.route.js'
import { userinfoRoute } from './http/userinfo.route.js'
import { wellKnownRoute } from './http/well-known.route.js'
import { adminSsoRoute } from './http/admin/sso.route.js'
import { authorizeRoutes, parRoute } from './http/authorize.route.js'
import { endSessionRoutes } from './http/end-session.route.js'
import { registerPages } from './http/pages.js'
import { Job, type JobDeps } from './jobs.js'
import { resolveKek, resolveKeks } from './keys/kek.js'
import { keySyncJob } from './keys/key-sync.js'
import { Keyring } from './keys/keyring.js'
import { activeKeysNotOpening, ensureActiveKeys } from './keys/lifecycle.js'
import { keyPolicy } from './keys/policy.js'
import { logDestination, loggerOptions } from './logging.js'
import { Metrics } from './metrics.js'
import { ChangeSync } from './propagation/change-sync.js'
import type { Services } from './services.js'
import { refreshTokens } from './tokens/refresh-tokens.js'
import { SuccessorDeriver } from './tokens/successor.js'
import { TokenIssuer } from './tokens/token-issuer.js'
import { ClientRateLimit } from './throttle/client-rate-limit.js'
import { LoginThrottle } from './throttle/login-throttle.js'
import { PasswordHasher } from './users/passwords.js'
import { userLogin } from './users/user-login.js'
import { authorizationCodes } from './authorization/authorization-codes.js'
import { BackchannelLogout } from './authorization/backchannel-logout.js'

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
  jobs: { readonly keySync: Job; readonly housekeeping: Job; readonly changeSync: Job }
  /** Drains in-flight requests, stops background work; the database is the caller's to close. */
  close(): Promise<void>
}

/**
 * An app whose routes are all registered but not open yet: until `open()`, every route except
 * `/healthz`, `/readyz` and `/metrics` answers 503 (`http/readiness.ts`), so it can listen before
 * the database answers (`serve()`).
 */
export interface StartingTessera extends Tessera {
  /** The readiness gate's state; `reason` says what start-up waits for (shown by `/readyz`). */
  readonly readiness: Readiness
  /**
   * One start-up attempt on the migrated database: ensures an active key and loads the keys.
   * Throws a database-unavailable error (try again), or a fatal one when the active key cannot
   * be decrypted (wrong KEK). Safe to call again after a failure.
   */
  prepare(): Promise<void>
  /** Starts the background jobs and change propagation, then opens the gate; after a successful `prepare()`. */
  open(): Promise<void>
}

/** Builds the HTTP app on an open, migrated database: ready when it resolves. */
export async function buildApp(opts: BuildOptions): Promise<Tessera> {
  const tessera = await createApp(opts)
  try {
    await tessera.prepare()
  } catch (err) {
    await tessera.close()
    throw err
  }
  await tessera.open()
  return tessera
}

/** Builds the HTTP app with every route registered, not ready yet (`StartingTessera`); no query runs. */
export async function createApp(opts: BuildOptions): Promise<StartingTessera> {
  const { config, database } = opts
  const readiness: Readiness = { ready: false, draining: false, reason: 'starting' }
  const logs = logDestination(config, opts.logStream)
  const app = Fastify({
    logger: loggerOptions(config, logs.stream),
    // Fastify's own two lines per request are replaced by one with the outcome (below).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    // One hop: the address the reverse proxy saw (the last X-Forwarded-For entry), never an
    // earlier entry, which the client wrote itself and would use to dodge address throttling.
    trustProxy: config.trustProxy ? (_address: string, hop: number) => hop < 1 : false,
    // A long header or URL is refused by Node's own limits; route params stay short.
    routerOptions: { maxParamLength: 256 },
    // Router refusals (a route parameter over that limit, a malformed URL) are OAuth JSON too
    // (found by the fuzz test, #12): not Fastify's own body.
    frameworkErrors: (err, _req, reply) => sendError(reply, toOAuthError(err)),
    // Strings stay strings: `{"password": 123}` is refused, not coerced (ASVS 2.2.1).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  })

  if (logs.note) app.log.warn(logs.note)
  const clock = opts.clock ?? systemClock
  const db = database.db
  const kek = resolveKek(config, (msg) => app.log.warn(msg))
  const keks = resolveKeks(config, kek)
  const policy = keyPolicy(config)
  const metrics = new Metrics()
  const jobDeps: JobDeps = { clock, log: app.log, count: (job, outcome) => metrics.jobRun(job, outcome) }
  const keyring = new Keyring(db, keks, { policy, clock, log: app.log })
  const keySync = new Job(keySyncJob({ db, keyring, clock, log: app.log, refreshSeconds: config.cacheRefreshSeconds }), jobDeps)
  const prepare = async () => {
    // A wrong KEK is fatal BEFORE anything is written: an instance that cannot open the keys that
    // sign today must not add keys sealed under its own KEK (a new line, a standby), which every
    // correct instance would then fail to open.
    const unopenable = await activeKeysNotOpening(db, keks)
    for (const { kid, kekId } of unopenable) app.log.error({ kid, kekId }, 'cannot decrypt the active signing key (wrong KEY_ENCRYPTION_KEY or tampered row)')
    if (unopenable.length > 0) {
      throw new Error(`cannot decrypt the active signing key with KEY_ENCRYPTION_KEY (key line ${unopenable.map((k) => k.alg).join(', ')}; wrong key, or a tampered row): refusing to start`)
    }
    const { created } = await ensureActiveKeys(db, { keks, policy, nowMs: clock.nowMs() })
    for (const { kid, alg } of created) {
      app.log.warn({ kid, alg }, config.env === 'production' ? `the ${alg} key line had no active key: generated one` : `DEVELOPMENT: generated a ${alg} signing key (rotate it with \`tessera keys rotate --alg ${alg}\`)`)
    }
    // Load the keys, and run a due schedule step (the standby of a first key) before serving.
    await keyring.reload()
    await keySync.run()
    if (!keyring.canSign()) {
      throw new Error(`cannot decrypt the active signing key with KEY_ENCRYPTION_KEY (key line ${keyring.unusableLines().join(', ')}; wrong key, or a tampered row): refusing to start`)
    }
  }

  // --- Change propagation (README "Changes reach every instance"): LISTEN/NOTIFY, the poll, the heartbeat.
  const clients = new ClientCache(db, config.cacheRefreshSeconds, clock)
  const changes = new ChangeSync({
    db, keyring, clients, clock, log: app.log, jobDeps,
    // The embedded database is single-process: the poll and the heartbeat, no LISTEN.
    listenUrl: database.kind === 'postgres' ? config.databaseListenUrl : undefined,
  })
  // --- end of change propagation (started with the other jobs, below)

  const passwords = new PasswordHasher(config.argon2, config.passwordHashing)
  const tokens = new TokenIssuer(keyring, config.issuer, config.accessTokenTtlSeconds, clock)
  const services: Services = {
    config,
    clock,
    db,
    keyring,
    clients,
    changes,
    metrics,
    tokens,
    // Retries across a KEK rotation still find the successor derived under a previous KEK.
    refreshTokens: refreshTokens(db, new SuccessorDeriver([keks.current, ...keks.previous]), {
      lifetimes: { idleSeconds: config.refreshTokenIdleTtlSeconds, absoluteSeconds: config.refreshTokenAbsoluteTtlSeconds },
      graceSeconds: config.refreshGraceSeconds,
    }),
    // Brute force and abuse (README): throttled password checks, hashing in a bounded queue.
    passwords,
    users: userLogin(db, passwords, new LoginThrottle(db, config.loginThrottle, clock, metrics), metrics),
    clientRateLimit: new ClientRateLimit(config.clientRateLimitPerSecond, clock),
    // --- authorization-code flow (issue 13)
    codes: authorizationCodes(db, {
      lifetimes: { idleSeconds: config.refreshTokenIdleTtlSeconds, absoluteSeconds: config.refreshTokenAbsoluteTtlSeconds },
      codeTtlSeconds: config.authorizationCodeTtlSeconds,
      clock,
    }),
    backchannel: new BackchannelLogout(tokens, { timeoutMs: config.backchannelLogoutTimeoutMs, retries: config.backchannelLogoutRetries }, app.log),
    // ---
  }

  // Cookies are parsed only where they are read (/refresh, /logout), not on every request.
  await app.register(fastifyCookie, { hook: false })
  // Before any route: the OpenAPI generator collects the routes as they are registered.
  await registerOpenApi(app, config)
  registerFormParser(app)
  // sendError counts every error it answers through this.
  app.decorate('metrics', services.metrics)
  registerErrorHandler(app)
  // First of the onRequest hooks: until start-up is done, nothing below it touches the database.
  registerReadinessGate(app, readiness)
  registerCors(app, services)

  // One log line per request, with its outcome; never the query string, headers or body.
  // Successful hits of the public, machine-polled routes (JWKS, discovery, probes, scrapes) are
  // logged at debug: at info they would be most of the log and a sizeable share of their cost.
  // The line is built only when its level is enabled (the quiet routes' lines are not, by default).
  // The level is fixed for the app's life (LOG_LEVEL), so it is read once.
  const logger = app.log as unknown as Pick<import('pino').Logger, 'isLevelEnabled'>
  const logged = { debug: logger.isLevelEnabled('debug'), info: logger.isLevelEnabled('info') }
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url
    const status = reply.statusCode
    const elapsed = reply.elapsedTime
    services.metrics.observeRequest(req.method, route, status, elapsed)
    const level = status < 400 && route !== undefined && QUIET_ROUTES.has(route) ? 'debug' : 'info'
    if (logged[level]) {
      const q = req.url.indexOf('?')
      req.log[level]({ method: req.method, path: q < 0 ? req.url : req.url.slice(0, q), status, ms: Math.round(elapsed) }, 'request')
    }
    done()
  })

  wellKnownRoute(app, services)
  healthRoute(app, services, readiness)
  tokenRoute(app, services)
  loginRoute(app, services)
  refreshRoute(app, services)
  revokeRoute(app, services)
  introspectRoute(app, services)
  userinfoRoute(app, services)
  logoutRoute(app, services)
  metricsRoute(app, services)
  openApiRoute(app)
  adminSessionsRoute(app, services)
  adminAuditRoute(app, services)
  adminKeysRoute(app, services)
  adminThrottleRoute(app, services)
  // --- admin API (issue 14): users
  adminUsersRoute(app, services)
  // ---
  // --- self-service account API (issue 14, docs/account.md)
  accountRoutes(app, services)
  // --- authorization-code flow (issue 13): /par, and the pages under one headers plugin
  parRoute(app, services)
  adminSsoRoute(app, services)
  await registerPages(app, config, (scope, pages) => {
    authorizeRoutes(scope, services, pages)
    endSessionRoutes(scope, services, pages)
  })
  // ---
  // Issue 14: the clients admin API (docs/admin-clients.md).
  adminClientsRoute(app, services)

  await app.ready()
  const housekeeping = new Job(housekeepingJob(db, config, metrics, clock, app.log), jobDeps)
  return {
    app,
    services,
    jobs: { keySync, housekeeping, changeSync: changes.job },
    readiness,
    prepare,
    open: async () => {
      if (readiness.draining) return
      keySync.start()
      housekeeping.start()
      // LISTEN (one attempt here; retried in the background), apply, first heartbeat, then every
      // second: the instance counts among those a change waits for from the moment it serves.
      await changes.start()
      if (!readiness.draining) readiness.ready = true
    },
    close: async () => {
      readiness.draining = true
      await Promise.all([keySync.stop(), housekeeping.stop()])
      await app.close()
      await services.backchannel.idle()
      // After the drain: changes are applied until the last request has been answered.
      await changes.stop()
    },
  }
}
