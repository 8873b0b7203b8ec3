// The seams of the code (docs/architecture.md "Architecture"), checked on the sources so that they stay put:
// grants hold no SQL, stores open no transaction, time comes from the clock, and the compiler
// tells a transaction from the database.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { Db, Trx } from '../../src/db/schema.js'
import { disableUser } from '../../src/users/disable-user.js'
import { markUserDisabled } from '../../src/users/users.store.js'

const src = fileURLToPath(new URL('../../src/', import.meta.url))
const files = (dir: string): string[] => readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : f.endsWith('.ts') ? [join(dir, f)] : []))
const sources = files(src).map((f) => ({ path: relative(src, f), text: readFileSync(f, 'utf8') }))
const imports = (text: string) => [...text.matchAll(/^import[^'"]*['"]([^'"]+)['"]/gm)].map((m) => m[1]!)

t.test('the sources were found', async (t) => {
  t.ok(sources.length > 50, `${sources.length} files`)
})

t.test('grants import nothing from db/ or a store', async (t) => {
  const grants = sources.filter((f) => f.path.startsWith('grants/'))
  t.ok(grants.length >= 6)
  for (const f of grants) t.same(imports(f.text).filter((i) => i.includes('/db/') || i.endsWith('.store.js')), [], f.path)
})

t.test('no store opens a transaction; fastify only in http/ and app.ts', async (t) => {
  for (const f of sources.filter((f) => f.path.endsWith('.store.ts'))) t.notMatch(f.text, /\.transaction\(/, f.path)
  // Type-only imports (a logger type) are fine anywhere; fastify itself runs in http/ and app.ts.
  for (const f of sources) if (!f.path.startsWith('http/') && f.path !== 'app.ts') t.notMatch(f.text, /^import (?!type )[^'"]*['"](fastify|@fastify\/[^'"]+)['"]/m, f.path)
})

t.test('Date.now appears only in the clock', async (t) => {
  for (const f of sources) if (f.path !== 'clock.ts') t.notMatch(f.text, /Date\.now\(/, f.path)
})

t.test('the compiler tells a transaction from the database (checked by `npm run typecheck`)', async (t) => {
  const typeOnly = (db: Db, trx: Trx) => {
    // @ts-expect-error a store that needs a transaction refuses the database
    void markUserDisabled(db, 'x')
    // @ts-expect-error a use case that opens its own transaction refuses a transaction
    void disableUser(trx, 'x', { ip: undefined, userAgent: undefined })
  }
  t.type(typeOnly, 'function')
})
