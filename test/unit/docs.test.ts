// The documentation (README.md and docs/*.md) is checked against the code: the configuration table
// (docs/configuration.md) and .env.example document exactly the environment variables in
// CONFIG_VARIABLES; the README quick start names what CI runs; every registered route has a curl
// example; every CLI command is in docs/cli.md; the metrics and error tables list what the code has;
// every relative link and anchor resolves.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { createApp } from '../../src/app.js'
import { COMMANDS } from '../../src/cli/commands.js'
import { CONFIG_VARIABLES, fixedDefault, loadConfig, type ConfigVariable } from '../../src/config.js'
import { openDatabase } from '../../src/db/connect.js'
import { Metrics } from '../../src/metrics.js'
import { ISSUER, TEST_KEK } from '../helpers/app.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const read = (p: string) => readFileSync(join(root, p), 'utf8')
const variables: readonly ConfigVariable[] = CONFIG_VARIABLES
const vars = variables.map((v) => v.name)

/** README.md and every docs/*.md page, by path relative to the repository. */
const DOC_FILES = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)]
const docs = new Map(DOC_FILES.map((f) => [f, read(f)]))
const allDocs = [...docs.values()].join('\n')

/** The text outside fenced code blocks. */
function prose(text: string): string {
  let fenced = false
  return text.split('\n').map((line) => {
    if (line.startsWith('```')) {
      fenced = !fenced
      return ''
    }
    return fenced ? '' : line
  }).join('\n')
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, duplicates numbered. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  for (const m of prose(text).matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/ /g, '-')
    const n = seen.get(slug) ?? 0
    seen.set(slug, n + 1)
    out.add(n === 0 ? slug : `${slug}-${n}`)
  }
  return out
}

/** The docs/configuration.md variable table: variable → Default column. */
function configurationRows(): Map<string, string> {
  const rows = new Map<string, string>()
  for (const m of read('docs/configuration.md').matchAll(/^\| `([A-Z][A-Z0-9_]*)` \| ([^|\n]*) \|/gm)) rows.set(m[1]!, m[2]!.trim())
  return rows
}

/** .env.example lines `NAME=value` (set) and `# NAME=value` (commented out). */
function exampleLines(): Array<{ name: string; value: string; commented: boolean }> {
  return [...read('.env.example').matchAll(/^(# ?)?([A-Z][A-Z0-9_]*)=(.*)$/gm)]
    .map((m) => ({ name: m[2]!, value: m[3]!, commented: m[1] !== undefined }))
}

/** A section of a markdown text: from its heading to the next heading of the same or a higher level. */
function section(text: string, heading: string): string {
  const level = /^#+/.exec(heading)![0].length
  const start = text.indexOf(`\n${heading}\n`)
  if (start < 0) return ''
  const rest = text.slice(start + heading.length + 2)
  const end = rest.search(new RegExp(`^#{1,${level}} `, 'm'))
  return end < 0 ? rest : rest.slice(0, end)
}

t.test('CONFIG_VARIABLES lists a known set of variables, each once', async (t) => {
  t.ok(vars.length >= 25, `found ${vars.length} variables`)
  t.ok(vars.includes('DATABASE_URL') && vars.includes('ISSUER') && vars.includes('KEY_ENCRYPTION_KEY'))
  t.same(vars.filter((v, i) => vars.indexOf(v) !== i), [], 'no duplicates')
})

t.test('the docs/configuration.md table documents exactly the variables in CONFIG_VARIABLES', async (t) => {
  const rows = configurationRows()
  for (const v of vars) t.ok(rows.has(v), `${v} has a row "| \`${v}\` |"`)
  for (const name of rows.keys()) t.ok(vars.includes(name), `docs/configuration.md row ${name} is in CONFIG_VARIABLES`)
})

t.test('.env.example lists exactly the variables in CONFIG_VARIABLES, each once', async (t) => {
  const names = exampleLines().map((l) => l.name)
  for (const v of vars) t.equal(names.filter((n) => n === v).length, 1, `${v} has one "${v}=" or "# ${v}=" line`)
  for (const name of new Set(names)) t.ok(vars.includes(name), `.env.example ${name} is in CONFIG_VARIABLES`)
})

t.test('fixed defaults: docs/configuration.md shows them, and .env.example sets them (a copied .env changes nothing)', async (t) => {
  const rows = configurationRows()
  const lines = exampleLines()
  for (const v of variables) {
    const def = fixedDefault(v)
    const line = lines.find((l) => l.name === v.name)
    if (def === undefined) {
      // A derived default (e.g. by NODE_ENV) would be overridden by an uncommented line.
      t.ok(line?.commented, `${v.name} (a derived default) is commented out in .env.example`)
      continue
    }
    t.ok(rows.get(v.name)?.startsWith(`\`${def}\``), `docs/configuration.md default of ${v.name} is \`${def}\` (got ${rows.get(v.name)})`)
    t.same(line && { commented: line.commented, value: line.value }, { commented: false, value: def }, `.env.example has ${v.name}=${def}`)
  }
})

t.test('the README quick start names the commands CI runs', async (t) => {
  const quickStart = section(read('README.md'), '## Quick start')
  t.match(quickStart, /npm ci && npm start/)
  t.match(quickStart, /^npm test\b/m)
  const ci = [...read('.ci/run').matchAll(/^(npm [a-z][a-z -]*)$/gm)].map((m) => m[1]!.trim())
  t.ok(ci.includes('npm test') && ci.includes('npm ci'), `.ci/run runs npm ci and npm test (found ${ci.join(', ')})`)
  for (const command of ci) t.ok(quickStart.includes(command), `the quick start names "${command}"`)
})

/** Paths the browser reaches through the hosted pages only (a CSRF token of its cookie; static files). */
const BROWSER_ONLY = ['/interaction/:id', '/interaction/:id/login', '/interaction/:id/consent', '/session/end/confirm', '/assets/pages.css', '/assets/form-post.js']

/** Every path the app registers, from fastify's route tree. */
async function registeredPaths(): Promise<string[]> {
  const config = loadConfig({ NODE_ENV: 'test', ISSUER, KEY_ENCRYPTION_KEY: TEST_KEK, LOG_LEVEL: 'silent', DATA_DIR: '/nonexistent-tessera-test-data' })
  const database = await openDatabase({ kind: 'pglite', dataDir: undefined })
  try {
    const tessera = await createApp({ config, database }) // registers every route; no query runs
    const tree = tessera.app.printRoutes({ commonPrefix: false })
    await tessera.close()
    const paths: string[] = []
    const stack: string[] = []
    for (const line of tree.split('\n')) {
      const m = /^([│ ]*)[├└]── (\S+)/.exec(line)
      if (!m) continue
      const depth = m[1]!.length / 4
      stack.length = depth
      stack.push(m[2]!)
      paths.push(stack.join(''))
    }
    return paths
  } finally {
    await database.close()
  }
}

t.test('every registered route is documented with a curl example (README.md or docs/*.md)', async (t) => {
  const paths = await registeredPaths()
  t.ok(paths.length >= 30, `found ${paths.length} routes`)
  for (const p of ['/token', '/login', '/refresh', '/revoke', '/introspect', '/userinfo', '/logout', '/healthz', '/readyz', '/metrics', '/.well-known/jwks.json', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/authorize', '/par', '/session/end', '/admin/audit', '/admin/keys/:kid/revoke']) {
    t.ok(paths.includes(p), `${p} is registered (the route tree was read)`)
  }
  for (const p of BROWSER_ONLY) t.ok(paths.includes(p), `${p} (browser only) is still registered`)
  for (const path of paths) {
    // `:user` in a route is any value in an example (`alice`, `5d0c…`, `KID`).
    const pattern = path.split(/:[A-Za-z]+/).map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^\\s/"\'?]+')
    if (BROWSER_ONLY.includes(path)) {
      // Documented, by name, with `{param}` for a parameter.
      const named = path.split(/:[A-Za-z]+/).map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('\\{[a-z_]+\\}')
      t.match(allDocs, new RegExp(`\`(?:GET|POST) ${named}\``), `${path} (browser only) is named in the docs`)
      continue
    }
    // A curl command (possibly continued over lines with `\`) that reaches $T<path> (or $TESSERA<path>).
    const curl = new RegExp(`curl(?:[^\\n]|\\\\\\n)*?\\$\\{?(?:T|TESSERA)\\}?${pattern}(?![\\w/.-])`)
    t.match(allDocs, curl, `${path} has a curl example`)
  }
})

t.test('every CLI command is in docs/cli.md', async (t) => {
  const cli = read('docs/cli.md')
  for (const name of Object.keys(COMMANDS)) {
    t.match(cli, new RegExp(`tessera ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w-])`), `docs/cli.md shows "tessera ${name}"`)
  }
})

t.test('the README links every docs page', async (t) => {
  const readme = read('README.md')
  for (const f of DOC_FILES.filter((f) => f.startsWith('docs/'))) t.ok(readme.includes(`](${f})`), `README.md links ${f}`)
})

t.test('every relative link in README.md and docs/*.md points to a file that exists, and an anchor to a heading', async (t) => {
  let checked = 0
  for (const [file, text] of docs) {
    for (const m of prose(text).matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)/g)) {
      const target = m[1]!
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // https:, mailto:
      checked++
      const [path, anchor] = target.split('#') as [string, string | undefined]
      const resolved = path === '' ? file : posix.normalize(posix.join(posix.dirname(file), path))
      const exists = existsSync(join(root, resolved))
      t.ok(exists, `${file}: ${target} → ${resolved} exists`)
      if (!exists || anchor === undefined) continue
      if (statSync(join(root, resolved)).isDirectory() || !resolved.endsWith('.md')) {
        t.fail(`${file}: ${target}: an anchor into something that is not a markdown page`)
        continue
      }
      const targetText = docs.get(resolved) ?? read(resolved)
      t.ok(anchors(targetText).has(anchor), `${file}: ${target}: ${resolved} has a heading #${anchor}`)
    }
  }
  t.ok(checked >= 50, `checked ${checked} links`)
})


t.test('the docs/operations.md metrics table lists exactly the tessera_* metrics', async (t) => {
  const names = (await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name)
  const table = section(read('docs/operations.md'), '## Metrics')
  const rows = [...table.matchAll(/^\| `(tessera_[a-z_]+)`/gm)].map((m) => m[1]!)
  t.ok(names.length >= 10, `found ${names.length} metrics`)
  for (const name of names) t.ok(rows.includes(name), `${name} has a row`)
  for (const row of rows) t.ok(names.includes(row), `row ${row} is a metric`)
})

t.test('the docs/endpoints.md error table names every OAuthErrorCode', async (t) => {
  const union = /export type OAuthErrorCode =([^;]*?)\n\n/s.exec(read('src/errors.ts'))?.[1] ?? ''
  const codes = [...union.matchAll(/\| '([a-z_]+)'/g)].map((m) => m[1]!)
  t.ok(codes.length >= 11, `found ${codes.length} codes`)
  const table = section(read('docs/endpoints.md'), '## Errors').split('\n').filter((l) => l.startsWith('| `')).join('\n')
  for (const code of codes) t.match(table, `\`${code}\``, `${code} is in the table`)
})
