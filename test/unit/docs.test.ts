// The README and .env.example document exactly the environment variables in CONFIG_VARIABLES.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { CONFIG_VARIABLES, fixedDefault, type ConfigVariable } from '../../src/config.js'

const root = new URL('../../', import.meta.url)
const read = (p: string) => readFileSync(new URL(p, root), 'utf8')
const variables: readonly ConfigVariable[] = CONFIG_VARIABLES
const vars = variables.map((v) => v.name)

/** The README "## Configuration" table: variable → Default column. */
function readmeRows(): Map<string, string> {
  const readme = read('README.md')
  const start = readme.indexOf('\n## Configuration\n')
  const end = readme.indexOf('\n## ', start + 1)
  const section = start < 0 ? '' : readme.slice(start, end < 0 ? undefined : end)
  const rows = new Map<string, string>()
  for (const m of section.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \| ([^|\n]*) \|/gm)) rows.set(m[1]!, m[2]!.trim())
  return rows
}

/** .env.example lines `NAME=value` (set) and `# NAME=value` (commented out). */
function exampleLines(): Array<{ name: string; value: string; commented: boolean }> {
  return [...read('.env.example').matchAll(/^(# ?)?([A-Z][A-Z0-9_]*)=(.*)$/gm)]
    .map((m) => ({ name: m[2]!, value: m[3]!, commented: m[1] !== undefined }))
}

t.test('CONFIG_VARIABLES lists a known set of variables, each once', async (t) => {
  t.ok(vars.length >= 25, `found ${vars.length} variables`)
  t.ok(vars.includes('DATABASE_URL') && vars.includes('ISSUER') && vars.includes('KEY_ENCRYPTION_KEY'))
  t.same(vars.filter((v, i) => vars.indexOf(v) !== i), [], 'no duplicates')
})

t.test('the README configuration table documents exactly the variables in CONFIG_VARIABLES', async (t) => {
  const rows = readmeRows()
  for (const v of vars) t.ok(rows.has(v), `${v} has a row "| \`${v}\` |"`)
  for (const name of rows.keys()) t.ok(vars.includes(name), `README row ${name} is in CONFIG_VARIABLES`)
})

t.test('.env.example lists exactly the variables in CONFIG_VARIABLES, each once', async (t) => {
  const names = exampleLines().map((l) => l.name)
  for (const v of vars) t.equal(names.filter((n) => n === v).length, 1, `${v} has one "${v}=" or "# ${v}=" line`)
  for (const name of new Set(names)) t.ok(vars.includes(name), `.env.example ${name} is in CONFIG_VARIABLES`)
})

t.test('fixed defaults: the README shows them, and .env.example sets them (a copied .env changes nothing)', async (t) => {
  const rows = readmeRows()
  const lines = exampleLines()
  for (const v of variables) {
    const def = fixedDefault(v)
    const line = lines.find((l) => l.name === v.name)
    if (def === undefined) {
      // A derived default (e.g. by NODE_ENV) would be overridden by an uncommented line.
      t.ok(line?.commented, `${v.name} (a derived default) is commented out in .env.example`)
      continue
    }
    t.ok(rows.get(v.name)?.startsWith(`\`${def}\``), `README default of ${v.name} is \`${def}\` (got ${rows.get(v.name)})`)
    t.same(line && { commented: line.commented, value: line.value }, { commented: false, value: def }, `.env.example has ${v.name}=${def}`)
  }
})

t.test('the README quick start names the commands CI runs', async (t) => {
  const readme = read('README.md')
  t.match(readme, /npm ci && npm start/)
  t.match(readme, /^npm test\b/m)
  t.match(read('.ci/run'), /^npm test$/m)
})

t.test('every route is documented with a curl example', async (t) => {
  const readme = read('README.md')
  for (const path of ['/token', '/login', '/refresh', '/revoke', '/introspect', '/userinfo', '/logout', '/healthz', '/readyz', '/.well-known/jwks.json', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    t.match(readme, new RegExp(`curl(?:[^\\n]|\\\\\\n)*\\$T${path.replace(/[.]/g, '\\.')}`), `${path} has a curl example`)
  }
})
