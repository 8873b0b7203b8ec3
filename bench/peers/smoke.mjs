#!/usr/bin/env node
// Smoke test of the node-oidc-provider peer: for each adapter (memory, and postgres when
// BENCH_PG_URL is set) start bench/peers/oidc-provider-server.mjs, wait for READY, then
//   - one client_credentials (JWT access token, ES256, aud = the resource),
//   - one refresh with a pre-minted token (new refresh token differs; the used one is refused),
//   - one JWKS GET,
// print the results and stop the server with SIGTERM. Exit code 1 if any check fails.
//
//   node bench/peers/smoke.mjs [--pool N] [--adapter memory|postgres]
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import pg from 'pg'

const here = dirname(fileURLToPath(import.meta.url))
const serverScript = join(here, 'oidc-provider-server.mjs')

const { values: args } = parseArgs({
  options: {
    pool: { type: 'string', default: '2000' },
    adapter: { type: 'string' },
  },
})

let failures = 0
function check(label, ok, detail = '') {
  if (!ok) failures += 1
  console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${label}${detail ? ` — ${detail}` : ''}`)
}

function startServer(adapter, outFile) {
  const argv = [serverScript, '--adapter', adapter, '--port', '0', '--pool', args.pool, '--out', outFile]
  if (adapter === 'postgres') argv.push('--pg-url', process.env.BENCH_PG_URL)
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const ready = new Promise((resolve, reject) => {
    let stdout = ''
    child.stdout.on('data', (d) => {
      stdout += d
      const line = stdout.split('\n').find((l) => l.startsWith('READY '))
      if (line) resolve({ path: line.slice(6).trim(), stdout })
    })
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before READY\n${stderr}`)))
  })
  return { child, ready, stderr: () => stderr }
}

async function stopServer(child) {
  if (child.exitCode !== null) return child.exitCode
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))
  child.kill('SIGTERM')
  return exited
}

async function smoke(adapter) {
  console.log(`\n== oidc-provider peer, ${adapter} adapter, pool ${args.pool}`)
  const dir = await mkdtemp(join(tmpdir(), 'oidc-peer-'))
  const outFile = join(dir, 'peer.json')
  const t0 = Date.now()
  const server = startServer(adapter, outFile)
  try {
    const { path, stdout } = await server.ready
    check('READY line', path === outFile && stdout.trim() === `READY ${outFile}`, `${Date.now() - t0} ms to READY`)
    const peer = JSON.parse(await readFile(path, 'utf8'))
    check('refresh-token pool', peer.refreshTokens.length === Number(args.pool), `${peer.refreshTokens.length} tokens`)
    const auth = `Basic ${Buffer.from(`${encodeURIComponent(peer.clientId)}:${encodeURIComponent(peer.clientSecret)}`).toString('base64')}`
    const post = (body) =>
      fetch(peer.tokenEndpoint, {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(body),
      })

    // client_credentials
    {
      const res = await post({ grant_type: 'client_credentials', scope: 'read' })
      const body = await res.json()
      const header = res.ok ? decodeProtectedHeader(body.access_token) : {}
      const claims = res.ok ? decodeJwt(body.access_token) : {}
      check('client_credentials', res.status === 200 && header.alg === 'ES256' && claims.aud === peer.resource && claims.scope === 'read',
        `${res.status} alg=${header.alg} typ=${header.typ} aud=${claims.aud} scope=${claims.scope} expires_in=${body.expires_in}`)
    }

    // refresh with rotation (the last pool token, to check nothing was evicted since minting)
    {
      const used = peer.refreshTokens[peer.refreshTokens.length - 1]
      const res = await post({ grant_type: 'refresh_token', refresh_token: used })
      const body = await res.json()
      const header = res.ok ? decodeProtectedHeader(body.access_token) : {}
      const claims = res.ok ? decodeJwt(body.access_token) : {}
      check('refresh', res.status === 200 && header.alg === 'ES256' && claims.aud === peer.resource,
        `${res.status} alg=${header.alg} typ=${header.typ} sub=${claims.sub} aud=${claims.aud} scope=${body.scope} id_token=${body.id_token ? 'yes' : 'no'}`)
      check('rotation returns a new refresh token', typeof body.refresh_token === 'string' && body.refresh_token !== used)
      if (adapter === 'postgres') {
        // Durable: the rotation is committed before the response (old row consumed, new row present).
        const db = new pg.Client({ connectionString: process.env.BENCH_PG_URL })
        await db.connect()
        const { rows } = await db.query(
          "SELECT id, consumed_at IS NOT NULL AS consumed FROM oidc_payload WHERE type = 'RefreshToken' AND id = ANY($1)",
          [[used, body.refresh_token]],
        )
        await db.end()
        const byId = Object.fromEntries(rows.map((r) => [r.id, r.consumed]))
        check('rotation committed in PostgreSQL', byId[used] === true && byId[body.refresh_token] === false,
          `used consumed=${byId[used]}, new consumed=${byId[body.refresh_token]}`)
      }
      const again = await post({ grant_type: 'refresh_token', refresh_token: used })
      const againBody = await again.json()
      check('used refresh token refused', again.status === 400 && againBody.error === 'invalid_grant', `${again.status} ${againBody.error}: ${againBody.error_description}`)
      // oidc-provider revokes the whole grant on reuse, so the rotated token is gone as well.
      const rotated = await post({ grant_type: 'refresh_token', refresh_token: body.refresh_token })
      check('reuse revoked the rotated token too', rotated.status === 400, `${rotated.status}`)
      // Another pool token is unaffected (one grant per pre-minted token).
      const other = await post({ grant_type: 'refresh_token', refresh_token: peer.refreshTokens[0] })
      check('other pool tokens unaffected', other.status === 200, `${other.status}`)
    }

    // JWKS
    {
      const res = await fetch(peer.jwksUri)
      const body = await res.json()
      const [key] = body.keys ?? []
      check('JWKS', res.status === 200 && body.keys.length === 1 && key.alg === 'ES256' && key.crv === 'P-256' && !('d' in key),
        `${res.status} kid=${key?.kid} alg=${key?.alg}`)
    }
  } catch (err) {
    check('server run', false, err.message)
  } finally {
    const code = await stopServer(server.child)
    check('clean exit on SIGTERM', code === 0, `exit ${code}`)
    await rm(dir, { recursive: true, force: true })
  }
}

const adapters = args.adapter ? [args.adapter] : ['memory', 'postgres']
for (const adapter of adapters) {
  if (adapter === 'postgres' && !process.env.BENCH_PG_URL) {
    console.log('\n== postgres adapter skipped: BENCH_PG_URL is not set')
    continue
  }
  await smoke(adapter)
}
console.log(failures === 0 ? '\nall checks passed' : `\n${failures} check(s) failed`)
process.exit(failures === 0 ? 0 : 1)
