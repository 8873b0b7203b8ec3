// Ceilings for the benchmark, in their own process (the same cores as the server under test):
//   GET  /bare  -> a static JSON document (the JWKS ceiling: Fastify and nothing else); with
//                  --jwks-file, the very body Tessera's JWKS answers (same bytes on the wire)
//   POST /sign  -> signs one ES256 JWT with jose per request, no database (the signing ceiling)
// No logger, no hooks, no database.
//
//   node bench/lib/bare-server.mjs --port P      prints "READY <port>" when listening; SIGTERM stops it.
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import { CompactSign, exportJWK, generateKeyPair } from 'jose'

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' }, 'jwks-file': { type: 'string' } } })

const { privateKey, publicKey } = await generateKeyPair('ES256')
const kid = randomUUID()
const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }
const jwks = values['jwks-file'] ? readFileSync(values['jwks-file'], 'utf8') : JSON.stringify({ keys: [jwk] })
const issuer = `http://${values.host}:${values.port}`

const utf8 = new TextEncoder()
const app = Fastify({ logger: false })

app.get('/bare', async (_req, reply) => reply.header('content-type', 'application/json; charset=utf-8').send(jwks))

app.post('/sign', async () => {
  const now = Math.floor(Date.now() / 1000)
  // jose signs the claims' JSON as a compact JWS, the way Tessera signs its tokens
  const claims = { client_id: 'c_bench', scope: 'read', iss: issuer, sub: 'c_bench', aud: issuer, iat: now, exp: now + 900, jti: randomUUID() }
  const token = await new CompactSign(utf8.encode(JSON.stringify(claims))).setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' }).sign(privateKey)
  return { access_token: token, token_type: 'Bearer', expires_in: 900, scope: 'read' }
})

await app.listen({ host: values.host, port: Number(values.port) })
process.stdout.write(`READY ${app.server.address().port}\n`)

const stop = () => app.close().finally(() => process.exit(0))
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
