// The fair refresh ceiling, in its own process (the same cores as the server under test): a bare
// Fastify route doing the essential work of a refresh and nothing else, on Tessera's own database.
//
//   POST /refresh   (Basic auth, form body grant_type=refresh_token&refresh_token=…)
//     1. parses the form like src/http/params.ts does (a content-type parser, URLSearchParams,
//        a parameter sent twice refused);
//     2. takes the client id from the Basic header (decoded, the secret is NOT checked: client
//        authentication is not part of the ceiling's work);
//     3. hashes the presented token like src/tokens/refresh-token.ts (SHA-256) and derives its
//        successor like src/tokens/successor.ts (HMAC-SHA-256 under an HKDF key; one KEK), whose
//        hash it passes;
//     4. sends the rotation statement once through a pg.Pool of 10 (Tessera's DATABASE_POOL_SIZE
//        default): the very statement rotate() in src/tokens/refresh-tokens.store.ts sends (the
//        function call, with the family's SSO session read in the same statement), with the
//        parameters it passes (client id, successor hashes, scope null, grace 10 s, idle 14 d,
//        ip, user agent);
//     5. signs one ES256 access token with jose, and, for a family with the `openid` scope (the
//        bench's families have it, as node-oidc-provider's do), one ES256 ID token, as Tessera's
//        answer carries one (OIDC Core §12.2);
//     6. answers { access_token, token_type, expires_in, refresh_token, scope[, id_token] }.
// No logger, no hooks, no metrics, no response schema. It presents tokens of its own pool, seeded
// by bench/lib/seed.mjs beside Tessera's (a token is never presented twice).
//
//   node bench/lib/bare-refresh-server.mjs --port P --db-url URL [--pool-size 10]
//   prints "READY <port>" when listening; SIGTERM stops it.
import { createHmac, hash, hkdfSync, randomBytes, randomUUID } from 'node:crypto'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import { CompactSign, generateKeyPair } from 'jose'
import pg from 'pg'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'db-url': { type: 'string' },
    'pool-size': { type: 'string', default: '10' },
  },
})
if (!values['db-url']) {
  process.stderr.write('--db-url is required\n')
  process.exit(2)
}

const GRACE_SECONDS = 10 // REFRESH_GRACE_SECONDS default
const IDLE_SECONDS = 14 * 86_400 // REFRESH_TOKEN_IDLE_TTL_SECONDS default
const TTL_SECONDS = 900
const ROTATE_SQL =
  "select r.*, case when r.outcome in ('rotated', 'retried') then (select f.sso_session_id from refresh_token_family as f where f.id = r.family_id) end as sso_session_id " +
  'from tessera_rotate_refresh_token($1, $2, $3::bytea[], $4::text[], $5::integer, $6::integer, $7, $8) as r'

const pool = new pg.Pool({ connectionString: values['db-url'], max: Number(values['pool-size']) })
const { privateKey } = await generateKeyPair('ES256')
const kid = randomUUID()
const issuer = `http://${values.host}:${values.port}`
// Like SuccessorDeriver: HMAC-SHA-256 under a key HKDF draws from the key-encryption key.
const successorKey = Buffer.from(hkdfSync('sha256', randomBytes(32), Buffer.from('tessera', 'utf8'), Buffer.from('refresh-token successor v1', 'utf8'), 32))
const sha256 = (s) => hash('sha256', s, 'buffer')
const successorOf = (parent) => 'tsr_' + createHmac('sha256', successorKey).update(parent, 'utf8').digest('base64url')

const app = Fastify({ logger: false })
app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
  const out = Object.create(null)
  for (const [key, value] of new URLSearchParams(body)) {
    if (Object.hasOwn(out, key)) return done(Object.assign(new Error(`parameter sent more than once: ${key}`), { statusCode: 400 }), undefined)
    out[key] = value
  }
  done(null, out)
})

const invalid = (reply, description) => reply.code(400).send({ error: 'invalid_grant', error_description: description })

// A JWT signed by jose the way Tessera signs its own (the claims' JSON as a compact JWS payload).
const utf8 = new TextEncoder()
const signJwt = (claims, typ) => new CompactSign(utf8.encode(JSON.stringify(claims))).setProtectedHeader({ alg: 'ES256', kid, typ }).sign(privateKey)

app.post('/refresh', async (req, reply) => {
  const params = req.body ?? {}
  const presented = params.refresh_token
  if (params.grant_type !== 'refresh_token' || typeof presented !== 'string') return invalid(reply, 'grant_type=refresh_token and refresh_token required')
  const auth = req.headers.authorization ?? ''
  const credentials = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString('utf8') : ''
  const colon = credentials.indexOf(':')
  if (colon < 0) return reply.code(401).send({ error: 'invalid_client' })
  const clientId = decodeURIComponent(credentials.slice(0, colon))
  const successor = successorOf(presented)
  const ua = req.headers['user-agent']
  const { rows } = await pool.query(ROTATE_SQL, [sha256(presented), clientId, [sha256(successor)], null, GRACE_SECONDS, IDLE_SECONDS, req.ip, typeof ua === 'string' ? ua.slice(0, 512) : null])
  const row = rows[0]
  if (!row || row.outcome !== 'rotated') return invalid(reply, row?.outcome ?? 'no row')
  const now = Math.floor(Date.now() / 1000)
  const token = await signJwt({ client_id: clientId, scope: row.scope, sid: row.family_id, iss: issuer, sub: row.user_id, aud: issuer, iat: now, exp: now + TTL_SECONDS, jti: randomUUID() }, 'at+jwt')
  const body = { access_token: token, token_type: 'Bearer', expires_in: TTL_SECONDS, refresh_token: successor, scope: row.scope }
  if (row.scope.split(' ').includes('openid')) {
    body.id_token = await signJwt({ auth_time: Math.floor(row.auth_time.getTime() / 1000), azp: clientId, sid: row.sso_session_id ?? row.family_id, preferred_username: row.username, iss: issuer, sub: row.user_id, aud: clientId, iat: now, exp: now + TTL_SECONDS }, 'JWT')
  }
  return body
})

await pool.query('select 1')
await app.listen({ host: values.host, port: Number(values.port) })
process.stdout.write(`READY ${app.server.address().port}\n`)

const stop = () =>
  app
    .close()
    .then(() => pool.end())
    .finally(() => process.exit(0))
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
