#!/usr/bin/env node
// node-oidc-provider peer for Tessera's benchmark (issue 4), run as its own process:
//
//   node bench/peers/oidc-provider-server.mjs --adapter memory|postgres --port P
//        [--pg-url URL] [--pg-pool 10] --pool N --out FILE [--rt-scope 'openid offline_access read']
//
// Starts oidc-provider on 127.0.0.1:P (P = 0 picks a free port; the issuer follows the real port)
// with one ES256 key, JWT access tokens for the resource https://api.example.com (resource
// indicators), client_credentials, and refresh-token rotation. Pre-mints N refresh tokens (one Grant
// each) through the provider's own models, writes
//   { issuer, tokenEndpoint, jwksUri, clientId, clientSecret, resource, adapter, refreshTokens: [...] }
// to FILE, then prints exactly one line `READY <FILE>` on stdout. Exits cleanly on SIGTERM/SIGINT.
//
// stdout carries only that line: oidc-provider prints its notices with console.info/console.warn
// (e.g. "Unsupported runtime" on Node 20), so every console method goes to stderr.
import * as http from 'node:http'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'

for (const method of ['log', 'info', 'warn', 'debug']) {
  console[method] = (...args) => console.error(...args)
}

const RESOURCE = 'https://api.example.com'
const CLIENT_ID = 'bench-client'
const ACCOUNT_ID = 'bench-user'
const ACCESS_TOKEN_TTL = 900
const REFRESH_TOKEN_TTL = 14 * 24 * 60 * 60
// oidc-provider's default clockTolerance, which its built-in memory adapter factory receives too.
const CLOCK_TOLERANCE = 15

function fail(message) {
  process.stderr.write(`oidc-provider-server: ${message}\n`)
  process.exit(2)
}

const { values: args } = parseArgs({
  options: {
    adapter: { type: 'string', default: 'memory' },
    port: { type: 'string', default: '0' },
    'pg-url': { type: 'string' },
    'pg-pool': { type: 'string', default: '10' },
    pool: { type: 'string', default: '60000' },
    out: { type: 'string' },
    'rt-scope': { type: 'string', default: 'openid offline_access read' },
  },
  strict: true,
})

const adapterKind = args.adapter
if (adapterKind !== 'memory' && adapterKind !== 'postgres') fail('--adapter must be memory or postgres')
const port = Number(args.port)
if (!Number.isInteger(port) || port < 0 || port > 65535) fail('--port must be an integer 0..65535')
const poolSize = Number(args.pool)
if (!Number.isInteger(poolSize) || poolSize < 0) fail('--pool must be a non-negative integer')
const pgPoolSize = Number(args['pg-pool'])
if (!Number.isInteger(pgPoolSize) || pgPoolSize < 1) fail('--pg-pool must be a positive integer')
if (!args.out) fail('--out FILE is required')
const outFile = resolve(args.out)
const pgUrl = args['pg-url'] ?? process.env.BENCH_PG_URL
if (adapterKind === 'postgres' && !pgUrl) fail('--pg-url (or BENCH_PG_URL) is required with --adapter postgres')
const rtScope = args['rt-scope'].split(' ').filter(Boolean)

// Imported after the console redirection so that import-time notices also go to stderr.
const { default: Provider } = await import('oidc-provider')
const { generateKeyPair, exportJWK } = await import('jose')

// ---- adapter -------------------------------------------------------------------------------------
let Adapter
let pgPool
let mintBuffer = null // non-null while pre-minting against PostgreSQL
let flushMintBuffer
if (adapterKind === 'memory') {
  // oidc-provider's own MemoryAdapter, fed a store that never evicts. The default factory
  // (lib/adapters/memory_adapter.js createMemoryAdapter) builds `new LRU({ maxSize: 1000 })`
  // (lib/helpers/lru.js, a two-generation LRU: once 1,000 keys have been inserted the older
  // generation is dropped), and that size is not configurable. Every pre-minted token costs three
  // keys (Grant, RefreshToken, the grant's member index), so a 60,000-token pool would mostly be
  // evicted before the run starts. Same adapter code, same LRU class, just a size nothing reaches.
  const { default: MemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js')
  const { default: LRU } = await import('oidc-provider/lib/helpers/lru.js')
  const store = new LRU({ maxSize: Number.MAX_SAFE_INTEGER })
  Adapter = (model) => new MemoryAdapter(model, store, CLOCK_TOLERANCE)
} else {
  const { createPool, createPgAdapter, ensureSchema, truncate, upsertMany } = await import('./oidc-pg-adapter.mjs')
  pgPool = createPool(pgUrl, pgPoolSize)
  await ensureSchema(pgPool)
  await truncate(pgPool)
  const PgAdapter = createPgAdapter(pgPool)
  // While the pool is pre-minted, the payloads the models hand to upsert() are buffered and written
  // with one multi-row INSERT per batch (2 x N single-row commits would take about a minute);
  // once READY every call goes straight to the adapter, one committed statement each.
  mintBuffer = []
  flushMintBuffer = async () => {
    const rows = mintBuffer.splice(0, mintBuffer.length)
    await upsertMany(pgPool, rows)
  }
  Adapter = class MintingPgAdapter extends PgAdapter {
    async upsert(id, payload, expiresIn) {
      if (mintBuffer === null) return super.upsert(id, payload, expiresIn)
      mintBuffer.push({ type: this.name, id, payload, expiresIn })
      if (mintBuffer.length >= 2000) await flushMintBuffer()
    }
  }
}

// ---- HTTP server first, so that --port 0 can resolve the issuer --------------------------------
let handler = (_req, res) => {
  res.statusCode = 503
  res.end()
}
const server = http.createServer((req, res) => handler(req, res))
await new Promise((ok, ko) => {
  server.once('error', ko)
  server.listen(port, '127.0.0.1', () => {
    server.off('error', ko)
    ok()
  })
})
const actualPort = server.address().port
const issuer = `http://127.0.0.1:${actualPort}`

// ---- provider ------------------------------------------------------------------------------------
const { privateKey } = await generateKeyPair('ES256', { extractable: true })
const jwk = { ...(await exportJWK(privateKey)), kid: 'bench-es256', alg: 'ES256', use: 'sig' }
const clientSecret = randomBytes(32).toString('base64url')

const provider = new Provider(issuer, {
  adapter: Adapter,
  jwks: { keys: [jwk] },
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: clientSecret,
      grant_types: ['client_credentials', 'refresh_token', 'authorization_code'],
      response_types: ['code'],
      redirect_uris: ['https://client.example.com/cb'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      scope: 'openid offline_access read',
    },
  ],
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  enabledJWA: {
    idTokenSigningAlgValues: ['ES256'],
    userinfoSigningAlgValues: ['ES256'],
    introspectionSigningAlgValues: ['ES256'],
    authorizationSigningAlgValues: ['ES256'],
  },
  scopes: ['openid', 'offline_access', 'read'],
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    async claims() {
      return { sub }
    },
  }),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    ClientCredentials: ACCESS_TOKEN_TTL,
    IdToken: ACCESS_TOKEN_TTL,
    RefreshToken: REFRESH_TOKEN_TTL,
    Grant: REFRESH_TOKEN_TTL,
    AuthorizationCode: 60,
    Interaction: 3600,
    Session: REFRESH_TOKEN_TTL,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope: 'read',
        accessTokenFormat: 'jwt',
        accessTokenTTL: ACCESS_TOKEN_TTL,
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
})
// No per-request logging: Koa would console.error every emitted error; keep one diagnostic line.
provider.silent = true
let serverErrors = 0
provider.on('server_error', (_ctx, err) => {
  serverErrors += 1
  if (serverErrors === 1) process.stderr.write(`oidc-provider-server: first server_error: ${err?.stack ?? err}\n`)
})

// ---- pre-mint the refresh-token pool ---------------------------------------------------------------
// One Grant per refresh token, as after N separate logins: oidc-provider answers a reused refresh
// token by revoking its whole grant, and its memory adapter keeps a per-grant member index that is
// rewritten on every save, so a shared grant would couple the tokens and grow that index.
const client = await provider.Client.find(CLIENT_ID)
if (!client) fail('static client not found')

async function mintRefreshToken() {
  const grant = new provider.Grant({ accountId: ACCOUNT_ID, clientId: CLIENT_ID })
  const oidcScope = rtScope.filter((s) => s === 'openid' || s === 'offline_access')
  if (oidcScope.length > 0) grant.addOIDCScope(oidcScope.join(' '))
  grant.addResourceScope(RESOURCE, 'read')
  const grantId = await grant.save()
  const token = new provider.RefreshToken({
    accountId: ACCOUNT_ID,
    client,
    grantId,
    gty: 'authorization_code',
    scope: rtScope.join(' '),
    resource: RESOURCE,
    rotations: 0,
    authTime: Math.floor(Date.now() / 1000),
    expiresWithSession: false,
  })
  return token.save()
}

const started = Date.now()
const refreshTokens = new Array(poolSize)
for (let i = 0; i < poolSize; i += 1) refreshTokens[i] = await mintRefreshToken()
if (mintBuffer !== null) {
  await flushMintBuffer()
  mintBuffer = null
}

// Every minted token must still be there (this is what the default 1,000-key memory store breaks).
{
  let missing = 0
  if (pgPool) {
    await pgPool.query('ANALYZE oidc_payload')
    const { rows } = await pgPool.query(
      "SELECT count(*)::int AS n FROM oidc_payload WHERE type = 'RefreshToken' AND consumed_at IS NULL AND id = ANY($1)",
      [refreshTokens],
    )
    missing = poolSize - rows[0].n
  } else {
    for (let i = 0; i < poolSize; i += 1) {
      if (!(await provider.RefreshToken.adapter.find(refreshTokens[i]))) missing += 1
    }
  }
  if (missing > 0) fail(`${missing} of ${poolSize} pre-minted refresh tokens are missing from the ${adapterKind} store`)
}
process.stderr.write(
  `oidc-provider-server: ${adapterKind} adapter, minted ${poolSize} refresh tokens in ${Date.now() - started} ms, ${issuer}\n`,
)

handler = provider.callback()

await writeFile(
  outFile,
  JSON.stringify({
    issuer,
    tokenEndpoint: `${issuer}/token`,
    jwksUri: `${issuer}/jwks`,
    clientId: CLIENT_ID,
    clientSecret,
    resource: RESOURCE,
    adapter: adapterKind,
    refreshTokenScope: rtScope.join(' '),
    refreshTokens,
  }),
)
process.stdout.write(`READY ${outFile}\n`)

// ---- shutdown -------------------------------------------------------------------------------------
let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  server.close()
  server.closeAllConnections()
  if (pgPool) await pgPool.end().catch(() => {})
  if (serverErrors > 0) process.stderr.write(`oidc-provider-server: ${serverErrors} server_error(s)\n`)
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
