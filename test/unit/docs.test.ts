// The README and .env.example document every environment variable config.ts reads.
import { readFileSync } from 'node:fs'
import t from 'tap'

const root = new URL('../../', import.meta.url)
const read = (p: string) => readFileSync(new URL(p, root), 'utf8')
const config = read('src/config.ts')
const vars = [...new Set([...config.matchAll(/\b(?:str|int|bool|oneOf)\('([A-Z0-9_]+)'/g)].map((m) => m[1]!))]

t.test('config.ts reads a known set of variables', async (t) => {
  t.ok(vars.length >= 25, `found ${vars.length} variables`)
  t.ok(vars.includes('DATABASE_URL') && vars.includes('ISSUER') && vars.includes('KEY_ENCRYPTION_KEY'))
})

t.test('every variable is in the README configuration table', async (t) => {
  const readme = read('README.md')
  for (const v of vars) t.match(readme, new RegExp(`\\| \`${v}\` \\|`), `${v} documented`)
})

t.test('every variable is in .env.example', async (t) => {
  const example = read('.env.example')
  for (const v of vars) t.match(example, new RegExp(`^#? ?${v}=`, 'm'), `${v} in .env.example`)
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
