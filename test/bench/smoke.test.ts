// CI proves the benchmark harness still works: `npm run bench -- --smoke` runs every scenario
// for a moment (Tessera, node-oidc-provider on both adapters, every ceiling). No speed is asserted:
// the machines are shared and noisy; only that every measurement ran and answered as it must.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../../', import.meta.url))
// The smoke run starts a PostgreSQL cluster and seven servers: longer than the default file timeout.
t.setTimeout(600_000)

interface Subject { name: string; rps: { median: number }; unexpected: number; errors: number }
interface Results { mode: string; harnessFailures: unknown[]; scenarios: Record<string, { subjects: Subject[] }>; targets: { target: string; status: string }[] }

t.test('npm run bench -- --smoke runs every scenario and writes its results', { timeout: 600_000 }, async (t) => {
  const env = { ...process.env }
  delete env.DATABASE_URL // the harness starts its own throwaway cluster, as documented
  const child = spawn(process.execPath, ['bench/run.mjs', '--smoke'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d) => (output += d))
  child.stderr.on('data', (d) => (output += d))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(code, 0, `the harness exits 0\n${output.slice(-4000)}`)
  const results = JSON.parse(readFileSync(new URL('bench/results/smoke-latest.json', `file://${root}`), 'utf8')) as Results
  t.equal(results.mode, 'smoke')
  t.same(results.harnessFailures, [], 'no measurement failed')
  for (const scenario of ['client_credentials', 'login', 'refresh', 'jwks', 'jwks_304', 'userinfo']) {
    const subjects = results.scenarios[scenario]?.subjects ?? []
    const tessera = subjects.find((s) => s.name === 'Tessera')
    t.ok(tessera && tessera.rps.median > 0, `${scenario}: Tessera answered`)
    t.equal(tessera?.unexpected, 0, `${scenario}: no unexpected status`)
  }
  const peers = Object.values(results.scenarios).flatMap((s) => s.subjects).filter((s) => /oidc-provider/i.test(s.name))
  t.ok(peers.length >= 3, 'node-oidc-provider was measured (memory and PostgreSQL adapters)')
  t.ok(results.targets.length >= 9, 'every target is reported')
})
