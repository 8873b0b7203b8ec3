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
import { exportJWK, generateKeyPair, SignJWT } from 'jose'

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' }, 'jwks-file': { type: 'string' } } })

const { privateKey, publicKey } = await generateKeyPair('ES256')
const kid = randomUUID()
const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }
const jwks = values['jwks-file'] ? readFileSync(values['jwks-file'], 'utf8') : JSON.stringify({ keys: [jwk] })
const issuer = `http://${values.host}:${values.port}`

const app = Fastify({ logger: false })

app.get('/bare', async (_req, reply) => reply.header('content-type', 'application/json; charset=utf-8').send(jwks))

app.post('/sign', async () => {
  const now = Math.floor(Date.now() / 1000)
  const token = await new SignJWT({ client_id: 'c_bench', scope: 'read' })
    .setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' })
    .setIssuer(issuer)
    .setSubject('c_bench')
    .setAudience(issuer)
    .setIssuedAt(now)
    .setExpirationTime(now + 900)
    .setJti(randomUUID())
    .sign(privateKey)
  return { access_token: token, token_type: 'Bearer', expires_in: 900, scope: 'read' }
})

await app.listen({ host: values.host, port: Number(values.port) })
process.stdout.write(`READY ${app.server.address().port}\n`)

const stop = () => app.close().finally(() => process.exit(0))
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
