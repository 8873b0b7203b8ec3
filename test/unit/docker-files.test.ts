// Static checks of the container files (Dockerfile, .dockerignore,
// docker-compose.yml). No Docker engine is needed: the files are parsed and
// cross-checked against the repository (package.json, package-lock.json,
// tsconfig.build.json, bin/). Deliberately imports nothing from src/.
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'

const root = fileURLToPath(new URL('../../', import.meta.url))
const read = (p: string): string => readFileSync(join(root, p), 'utf8')

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
type Obj = { [k: string]: Json }

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

function obj(v: unknown, what: string): Obj {
  if (!isObj(v)) throw new Error(`${what}: expected a mapping`)
  return v
}

/** Split on whitespace, keeping "double" or 'single' quoted runs together (quotes removed). */
function words(s: string): string[] {
  const out: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g
  let cur = ''
  let last = -1
  for (const m of s.matchAll(re)) {
    const piece = m[1] ?? m[2] ?? m[3] ?? ''
    const start = m.index ?? 0
    // Adjacent pieces (no whitespace between) belong to the same word: A="b c"
    if (last === start) cur += piece
    else {
      if (last !== -1) out.push(cur)
      cur = piece
    }
    last = start + m[0].length
  }
  if (last !== -1) out.push(cur)
  return out
}

function globToRegExp(glob: string): RegExp {
  const esc = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')
  return new RegExp(`^${esc}$`)
}

// ---------------------------------------------------------------------------
// Dockerfile model
// ---------------------------------------------------------------------------

interface Instruction {
  line: number
  cmd: string
  args: string
}

interface Stage {
  index: number
  image: string
  name: string | undefined
  instructions: Instruction[]
}

function parseDockerfile(text: string): Stage[] {
  const lines = text.split(/\r?\n/)
  const instructions: Instruction[] = []
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i] ?? ''
    if (/^\s*(#|$)/.test(first)) continue
    const line = i + 1
    let joined = first
    // Line continuation; comment and blank lines inside are dropped (as docker does).
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      joined = joined.replace(/\\\s*$/, ' ')
      const next = lines[++i] ?? ''
      if (/^\s*#/.test(next)) {
        joined += '\\'
        continue
      }
      joined += next
    }
    const m = /^\s*(\S+)\s*(.*)$/s.exec(joined)
    if (m) instructions.push({ line, cmd: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').trim() })
  }

  const stages: Stage[] = []
  for (const ins of instructions) {
    if (ins.cmd === 'FROM') {
      const w = words(ins.args).filter((x) => !x.startsWith('--'))
      const asAt = w.findIndex((x) => x.toUpperCase() === 'AS')
      stages.push({
        index: stages.length,
        image: w[0] ?? '',
        name: asAt >= 0 ? w[asAt + 1] : undefined,
        instructions: [],
      })
    } else {
      const cur = stages[stages.length - 1]
      if (cur) cur.instructions.push(ins)
      else if (ins.cmd !== 'ARG') throw new Error(`Dockerfile line ${ins.line}: ${ins.cmd} before FROM`)
    }
  }
  return stages
}

/** ENV K=V K2="v 2" (modern form) or ENV K V (legacy form). */
function stageEnv(stage: Stage): Map<string, string> {
  const env = new Map<string, string>()
  for (const ins of stage.instructions.filter((i) => i.cmd === 'ENV')) {
    const w = words(ins.args)
    if (w.length > 0 && !(w[0] ?? '').includes('=')) {
      env.set(w[0] ?? '', w.slice(1).join(' '))
      continue
    }
    for (const kv of w) {
      const eq = kv.indexOf('=')
      if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1))
    }
  }
  return env
}

interface Copy {
  line: number
  from: string | undefined
  sources: string[]
  dest: string
}

function stageCopies(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.cmd === 'COPY' || i.cmd === 'ADD')
    .map((ins) => {
      let rest = ins.args
      let from: string | undefined
      // Leading --flags
      for (;;) {
        const m = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest)
        if (!m) break
        if (m[1] === 'from') from = m[2]
        rest = rest.slice(m[0].length)
      }
      const parts: string[] = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : words(rest)
      return { line: ins.line, from, sources: parts.slice(0, -1), dest: parts[parts.length - 1] ?? '' }
    })
}

/** Parse an exec-form (JSON array) argument; undefined for shell form. */
function execForm(args: string): string[] | undefined {
  if (!args.trim().startsWith('[')) return undefined
  const v: unknown = JSON.parse(args)
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined
}

function runCommands(stage: Stage): string[] {
  return stage.instructions.filter((i) => i.cmd === 'RUN').map((i) => i.args)
}

// ---------------------------------------------------------------------------
// Repository facts
// ---------------------------------------------------------------------------

const pkg = JSON.parse(read('package.json')) as {
  scripts?: Record<string, string>
  engines?: { node?: string }
  type?: string
}
const lock = JSON.parse(read('package-lock.json')) as {
  packages?: Record<string, { dev?: boolean; hasInstallScript?: boolean }>
}
const dockerfileText = read('Dockerfile')
const stages = parseDockerfile(dockerfileText)
const finalStage = stages[stages.length - 1]
const dockerignore = read('.dockerignore')
  .split(/\r?\n/)
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'))
const composeText = read('docker-compose.yml')
const compose = obj(parseYaml(composeText) as unknown, 'docker-compose.yml')

const engineMajor = Number(/(\d+)/.exec(pkg.engines?.node ?? '')?.[1])

function ignoredByDockerignore(path: string): boolean {
  const p = path.replace(/^\.\//, '').replace(/\/+$/, '')
  let ignored = false
  for (const raw of dockerignore) {
    const negate = raw.startsWith('!')
    const pat = (negate ? raw.slice(1) : raw).replace(/^\.?\//, '').replace(/\/+$/, '')
    const re = globToRegExp(pat)
    // A pattern matches the path itself or any of its parent directories.
    const segs = p.split('/')
    const hit = segs.some((_, i) => re.test(segs.slice(0, i + 1).join('/')))
    if (hit) ignored = !negate
  }
  return ignored
}

/** Files/dirs a COPY source (possibly a simple glob) names in the build context. */
function contextMatches(src: string): string[] {
  const p = src.replace(/^\.\//, '').replace(/\/+$/, '')
  if (p === '' || p === '.') return ['.']
  if (!/[*?[]/.test(p)) return existsSync(join(root, p)) ? [p] : []
  const slash = p.lastIndexOf('/')
  const dir = slash >= 0 ? p.slice(0, slash) : ''
  const re = globToRegExp(p.slice(slash + 1))
  if (!existsSync(join(root, dir))) return []
  return readdirSync(join(root, dir))
    .filter((n) => re.test(n))
    .map((n) => (dir ? `${dir}/${n}` : n))
}

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

t.test('Dockerfile: stages and base images', async (t) => {
  t.ok(stages.length >= 2, `multi-stage build (found ${stages.length} FROM)`)
  t.ok(Number.isInteger(engineMajor) && engineMajor >= 20, `package.json engines.node is >=20 (${pkg.engines?.node})`)
  const names = new Set<string>()
  for (const s of stages) {
    if (s.name) {
      t.notOk(names.has(s.name.toLowerCase()), `stage name ${s.name} is unique`)
      names.add(s.name.toLowerCase())
    }
    if (names.has(s.image.toLowerCase()) && s.image.toLowerCase() !== s.name?.toLowerCase()) continue // FROM <earlier stage>
    const m = /^(?:docker\.io\/(?:library\/)?)?node:(\d+)(?:[.-]|$)/.exec(s.image)
    t.ok(m, `stage ${s.index} (${s.image}) is an official node image with an explicit major version`)
    t.equal(Number(m?.[1]), engineMajor, `stage ${s.index} uses Node ${engineMajor} (package.json engines)`)
    t.notMatch(s.image, /alpine/, `stage ${s.index} is glibc-based (argon2 prebuilt binaries)`)
  }
})

t.test('Dockerfile: COPY sources', async (t) => {
  const copies = stages.flatMap((s) => stageCopies(s).map((c) => ({ stage: s, copy: c })))
  t.ok(copies.length > 0, 'has COPY instructions')
  for (const { stage, copy } of copies) {
    if (copy.from !== undefined) {
      const earlier = stages.slice(0, stage.index)
      const ok = /^\d+$/.test(copy.from)
        ? Number(copy.from) < stage.index
        : earlier.some((s) => s.name?.toLowerCase() === copy.from?.toLowerCase())
      t.ok(ok, `line ${copy.line}: COPY --from=${copy.from} names an earlier stage`)
      continue
    }
    t.ok(copy.sources.length > 0, `line ${copy.line}: COPY has a source`)
    for (const src of copy.sources) {
      t.notOk(src.includes('..'), `line ${copy.line}: ${src} stays inside the build context`)
      const found = contextMatches(src)
      t.ok(found.length > 0, `line ${copy.line}: ${src} exists in the repository`)
      for (const f of found) t.notOk(ignoredByDockerignore(f), `line ${copy.line}: ${f} is not excluded by .dockerignore`)
    }
  }
})

t.test('Dockerfile: build stage', async (t) => {
  t.equal(typeof pkg.scripts?.build, 'string', 'package.json has a build script')
  t.match(pkg.scripts?.build ?? '', /tsconfig\.build\.json/, 'build script compiles tsconfig.build.json')

  const build = stages.find((s) => runCommands(s).some((r) => /\bnpm run build\b/.test(r)))
  t.ok(build, 'some stage runs `npm run build`')
  if (!build) return
  t.not(build, finalStage, 'the build runs in an earlier stage, not the runtime stage')

  const runs = runCommands(build)
  const ciAt = runs.findIndex((r) => /\bnpm ci\b/.test(r))
  const buildAt = runs.findIndex((r) => /\bnpm run build\b/.test(r))
  t.ok(ciAt >= 0 && ciAt < buildAt, 'dependencies are installed before building')
  // `prepare` runs tsc; without --ignore-scripts it would run before sources are copied.
  t.match(runs[ciAt] ?? '', /--ignore-scripts/, 'build-stage npm ci skips lifecycle scripts (prepare)')
  t.notMatch(runs[ciAt] ?? '', /--omit=dev|--production/, 'build stage installs dev dependencies (typescript)')

  const copied = new Set(
    stageCopies(build)
      .filter((c) => c.from === undefined)
      .flatMap((c) => c.sources.flatMap(contextMatches)),
  )
  // Everything tsc needs: both tsconfigs and each included directory.
  const tsbuild = JSON.parse(read('tsconfig.build.json')) as { extends?: string; include?: string[] }
  const needed = ['package.json', 'package-lock.json', 'tsconfig.build.json', ...(tsbuild.include ?? [])]
  if (tsbuild.extends) needed.push(tsbuild.extends.replace(/^\.\//, ''))
  for (const n of needed) t.ok(copied.has(n), `build stage copies ${n}`)

  // Manifests are copied before `npm ci`, sources after it (layer caching).
  const order = build.instructions.filter((i) => i.cmd === 'COPY' || (i.cmd === 'RUN' && /\bnpm (ci|run build)\b/.test(i.args)))
  const idxCi = order.findIndex((i) => i.cmd === 'RUN' && /\bnpm ci\b/.test(i.args))
  const before = order.slice(0, idxCi).map((i) => i.args).join(' ')
  const after = order.slice(idxCi + 1).map((i) => i.args).join(' ')
  t.match(before, /package-lock\.json/, 'lockfile is copied before npm ci')
  t.match(after, /\bsrc\b/, 'src is copied after npm ci')
})

t.test('Dockerfile: runtime stage', async (t) => {
  t.ok(finalStage, 'has a final stage')
  if (!finalStage) return
  const ins = (cmd: string) => finalStage.instructions.filter((i) => i.cmd === cmd)
  const env = stageEnv(finalStage)

  t.equal(env.get('NODE_ENV'), 'production', 'NODE_ENV=production')
  t.equal(env.get('HOST'), '0.0.0.0', 'HOST=0.0.0.0 (the app default 127.0.0.1 is unreachable from outside)')
  t.match(env.get('PORT') ?? '', /^\d+$/, 'PORT is set')

  const users = ins('USER')
  t.ok(users.length > 0, 'final stage sets USER')
  const user = (users[users.length - 1]?.args ?? '').split(':')[0] ?? ''
  t.notOk(['', 'root', '0'].includes(user), `runs as a non-root user (${user})`)

  const expose = ins('EXPOSE').flatMap((i) => words(i.args)).map((p) => p.replace(/\/tcp$/i, ''))
  t.ok(expose.includes(env.get('PORT') ?? '-'), `EXPOSE ${expose.join(' ')} includes PORT ${env.get('PORT')}`)

  const health = ins('HEALTHCHECK')
  t.equal(health.length, 1, 'one HEALTHCHECK')
  const hc = health[0]?.args ?? ''
  t.notMatch(hc, /^NONE\b/i, 'healthcheck is not disabled')
  t.match(hc, /\bCMD\b/, 'healthcheck has a command')
  t.match(hc, /\/healthz/, 'healthcheck probes /healthz')
  t.match(hc, /fetch\(/, 'healthcheck uses node fetch (no curl in slim images)')
  t.notMatch(hc, /\b(curl|wget)\b/, 'healthcheck does not depend on curl/wget')

  const entry = ins('ENTRYPOINT')
  t.equal(entry.length, 1, 'one ENTRYPOINT')
  const ep = execForm(entry[0]?.args ?? '')
  t.ok(ep, 'ENTRYPOINT uses exec form (node is PID 1 and receives SIGTERM)')
  t.same(ep?.slice(0, 2), ['node', 'bin/tessera.js'], 'ENTRYPOINT runs bin/tessera.js')
  t.ok(existsSync(join(root, 'bin/tessera.js')), 'bin/tessera.js exists')
  const cmd = ins('CMD')
  t.same(execForm(cmd[cmd.length - 1]?.args ?? ''), ['serve'], 'default CMD is serve')

  const workdirs = ins('WORKDIR')
  const workdir = workdirs[workdirs.length - 1]?.args ?? '/'
  const copies = stageCopies(finalStage)
  // Absolute destination path, resolved against WORKDIR, without trailing slash.
  const dest = (c: Copy) => posix.resolve(workdir, c.dest).replace(/(.)\/+$/, '$1')
  t.ok(
    copies.some((c) => c.from !== undefined && c.sources.some((s) => /\/dist\/?$/.test(s)) && dest(c) === posix.join(workdir, 'dist')),
    'copies dist/ from the build stage to WORKDIR/dist (bin/tessera.js imports ../dist/src/cli/main.js)',
  )
  t.ok(copies.some((c) => c.from === undefined && c.sources.includes('bin') && dest(c) === posix.join(workdir, 'bin')), 'copies bin/ to WORKDIR/bin')
  t.ok(copies.some((c) => c.from === undefined && c.sources.includes('package.json') && dest(c) === workdir), 'copies package.json ("type": "module") to WORKDIR')
  t.equal(pkg.type, 'module', 'package.json is ESM')
  t.notOk(copies.some((c) => c.from === undefined && c.sources.some((s) => ['src', 'test', '.', './'].includes(s))), 'no sources or whole context in the runtime image')

  const ci = runCommands(finalStage).find((r) => /\bnpm ci\b/.test(r)) ?? ''
  t.match(ci, /--omit=dev/, 'runtime installs production dependencies only')
  t.match(ci, /--ignore-scripts/, 'runtime npm ci skips `prepare` (no tsc there)')
  t.match(ci, /npm cache clean --force/, 'npm cache is cleaned in the same layer')
  t.notOk(runCommands(finalStage).some((r) => /\bnpm run build\b|\btsc\b/.test(r)), 'runtime stage does not compile')

  // --ignore-scripts is only safe while no production dependency has an install script.
  const scripted = Object.entries(lock.packages ?? {})
    .filter(([name, p]) => name !== '' && p.hasInstallScript && !p.dev)
    .map(([name]) => name)
  t.same(scripted, [], 'no production dependency needs an install script')
  const argon = lock.packages?.['node_modules/@node-rs/argon2'] as { optionalDependencies?: Record<string, string> } | undefined
  t.ok(
    Object.keys(argon?.optionalDependencies ?? {}).some((n) => n.includes('linux-x64-gnu')) &&
      Object.keys(argon?.optionalDependencies ?? {}).some((n) => n.includes('linux-arm64-gnu')),
    '@node-rs/argon2 ships prebuilt glibc binaries for x64 and arm64',
  )
})

// ---------------------------------------------------------------------------
// .dockerignore
// ---------------------------------------------------------------------------

t.test('.dockerignore', async (t) => {
  for (const p of ['node_modules', '.env', 'dist', '.git']) t.ok(ignoredByDockerignore(p), `excludes ${p}`)
  t.ok(ignoredByDockerignore('node_modules/pg/package.json'), 'excludes nested node_modules content')
  t.ok(ignoredByDockerignore('server.log'), 'excludes *.log')
  for (const p of ['package.json', 'package-lock.json', 'src', 'migrations', 'bin', 'tsconfig.json', 'tsconfig.build.json']) {
    t.notOk(ignoredByDockerignore(p), `keeps ${p}`)
  }
})

// ---------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------

function envOf(service: Obj): Map<string, string> {
  const env = new Map<string, string>()
  const e = service.environment
  if (Array.isArray(e)) {
    for (const item of e) {
      const s = String(item)
      const eq = s.indexOf('=')
      env.set(eq >= 0 ? s.slice(0, eq) : s, eq >= 0 ? s.slice(eq + 1) : '')
    }
  } else if (isObj(e)) {
    for (const [k, v] of Object.entries(e)) env.set(k, v === null ? '' : String(v))
  }
  return env
}

function dependsOn(service: Obj): Map<string, string> {
  const d = service.depends_on
  const out = new Map<string, string>()
  if (Array.isArray(d)) for (const n of d) out.set(String(n), 'service_started')
  else if (isObj(d)) {
    for (const [n, v] of Object.entries(d)) out.set(n, isObj(v) && typeof v.condition === 'string' ? v.condition : 'service_started')
  }
  return out
}

function healthTest(service: Obj): string[] {
  const hc = service.healthcheck
  if (!isObj(hc) || hc.disable === true) return []
  const test = hc.test
  if (typeof test === 'string') return ['CMD-SHELL', test]
  return Array.isArray(test) ? test.map(String) : []
}

t.test('docker-compose.yml: structure', async (t) => {
  t.notOk('version' in compose, 'no obsolete top-level `version`')
  const services = obj(compose.services, 'services')
  for (const n of ['postgres', 'migrate', 'tessera']) t.ok(isObj(services[n]), `service ${n} exists`)

  const postgres = obj(services.postgres, 'postgres')
  const migrate = obj(services.migrate, 'migrate')
  const tessera = obj(services.tessera, 'tessera')

  for (const [name, s] of [['migrate', migrate], ['tessera', tessera]] as const) {
    const b = s.build
    const ctx = typeof b === 'string' ? b : isObj(b) ? b.context : undefined
    t.ok(ctx === '.' || ctx === './', `${name} builds the repository`)
    const df = isObj(b) && typeof b.dockerfile === 'string' ? b.dockerfile : 'Dockerfile'
    t.ok(existsSync(join(root, df)), `${name}: ${df} exists`)
  }

  t.same(migrate.command, ['migrate'], 'migrate runs `tessera migrate`')
  t.equal(migrate.restart, 'no', 'migrate is one-shot (restart: "no")')
  t.equal(dependsOn(migrate).get('postgres'), 'service_healthy', 'migrate waits for a healthy postgres')

  const deps = dependsOn(tessera)
  t.equal(deps.get('postgres'), 'service_healthy', 'tessera waits for a healthy postgres')
  t.equal(deps.get('migrate'), 'service_completed_successfully', 'tessera waits for migrations to succeed')
  t.equal(tessera.restart, 'unless-stopped', 'tessera restarts unless stopped')

  const pgHealth = healthTest(postgres)
  t.ok(pgHealth.length > 0, 'postgres has a healthcheck')
  t.match(pgHealth.join(' '), /pg_isready/, 'postgres healthcheck uses pg_isready')
  const pgEnv = envOf(postgres)
  t.match(pgHealth.join(' '), new RegExp(`-U\\s+${pgEnv.get('POSTGRES_USER')}\\b`), 'pg_isready checks POSTGRES_USER')
  t.match(pgHealth.join(' '), new RegExp(`-d\\s+${pgEnv.get('POSTGRES_DB')}\\b`), 'pg_isready checks POSTGRES_DB')
  const pgVolumes = Array.isArray(postgres.volumes) ? postgres.volumes.map(String) : []
  const named = pgVolumes.map((v) => v.split(':')[0] ?? '').filter((v) => /^[A-Za-z0-9][\w.-]*$/.test(v))
  t.ok(named.length > 0, 'postgres data lives in a named volume')
  for (const v of named) t.ok(isObj(compose.volumes) && v in compose.volumes, `volume ${v} is declared`)

  const tHealth = healthTest(tessera)
  t.ok(tHealth.length > 0, 'tessera has a healthcheck')
  t.match(tHealth.join(' '), /\/readyz/, 'tessera healthcheck probes /readyz')
  t.notMatch(tHealth.join(' '), /\b(curl|wget)\b/, 'tessera healthcheck does not need curl/wget')

  const ports = Array.isArray(tessera.ports) ? tessera.ports.map(String) : []
  const dockerPort = finalStage ? stageEnv(finalStage).get('PORT') : undefined
  t.ok(ports.some((p) => p.split(':').pop() === dockerPort), `tessera publishes container port ${dockerPort}`)
})

t.test('docker-compose.yml: configuration', async (t) => {
  const services = obj(compose.services, 'services')
  const pgEnv = envOf(obj(services.postgres, 'postgres'))

  for (const name of ['migrate', 'tessera']) {
    const env = envOf(obj(services[name], name))
    const dbUrl = env.get('DATABASE_URL') ?? ''
    t.ok(URL.canParse(dbUrl), `${name}: DATABASE_URL is a URL`)
    if (URL.canParse(dbUrl)) {
      const u = new URL(dbUrl)
      t.match(u.protocol, /^postgres(ql)?:$/, `${name}: DATABASE_URL is a postgres URL`)
      t.equal(u.hostname, 'postgres', `${name}: DATABASE_URL host is the postgres service`)
      t.ok(u.port === '' || u.port === '5432', `${name}: DATABASE_URL port is 5432`)
      t.equal(decodeURIComponent(u.username), pgEnv.get('POSTGRES_USER'), `${name}: DATABASE_URL user matches POSTGRES_USER`)
      t.equal(decodeURIComponent(u.password), pgEnv.get('POSTGRES_PASSWORD'), `${name}: DATABASE_URL password matches POSTGRES_PASSWORD`)
      t.equal(u.pathname.slice(1), pgEnv.get('POSTGRES_DB'), `${name}: DATABASE_URL database matches POSTGRES_DB`)
    }
    t.equal(env.get('NODE_ENV'), 'production', `${name}: NODE_ENV=production`)
    t.match(env.get('KEY_ENCRYPTION_KEY') ?? '', /^\$\{KEY_ENCRYPTION_KEY:\?[^}]+\}$/, `${name}: KEY_ENCRYPTION_KEY is required from the host env (\${VAR:?message})`)
    const issuer = env.get('ISSUER') ?? ''
    t.ok(URL.canParse(issuer), `${name}: ISSUER is a URL`)
    if (issuer.startsWith('http:')) t.equal(env.get('ALLOW_INSECURE_ISSUER'), 'true', `${name}: http ISSUER needs ALLOW_INSECURE_ISSUER`)
  }

  const tEnv = envOf(obj(services.tessera, 'tessera'))
  t.equal(tEnv.get('ISSUER'), 'http://localhost:8080', 'ISSUER matches the published port')
  t.equal(tEnv.get('COOKIE_SECURE'), 'true', 'COOKIE_SECURE=true')
  t.ok(tEnv.has('LOG_LEVEL'), 'LOG_LEVEL is set')

  // ALLOW_INSECURE_ISSUER must be explained as demo-only next to where it is set.
  const lines = composeText.split(/\r?\n/)
  const at = lines.findIndex((l) => /^\s*-?\s*ALLOW_INSECURE_ISSUER\s*[:=]/.test(l))
  t.ok(at >= 0, 'ALLOW_INSECURE_ISSUER is set')
  const nearby = lines.slice(Math.max(0, at - 3), at + 1).join('\n')
  t.match(nearby, /#.*demo/i, 'ALLOW_INSECURE_ISSUER carries a "local demo only" comment')
})

t.test('the embedded database: the image declares its data folder a volume; compose shows the opt-in single instance on a named volume', async (t) => {
  const volumes = finalStage ? finalStage.instructions.filter((i) => i.cmd === 'VOLUME').map((i) => i.args) : []
  t.ok(volumes.some((v) => /["\s[]\/app\/data["\s\]]|^\/app\/data$/.test(v)), 'VOLUME /app/data in the runtime stage')
  const services = obj(compose.services, 'services')
  const embedded = obj(services['tessera-embedded'], 'tessera-embedded')
  t.same(embedded.profiles, ['embedded'], 'started only on request (a profile): `docker compose up` stays on PostgreSQL')
  const env = envOf(embedded)
  t.equal(env.get('ALLOW_EMBEDDED_DATABASE'), 'true', 'asks for the embedded database explicitly')
  t.notOk(env.has('DATABASE_URL'), 'no DATABASE_URL')
  t.equal(env.get('NODE_ENV'), 'production')
  t.match(env.get('KEY_ENCRYPTION_KEY') ?? '', /^\$\{KEY_ENCRYPTION_KEY:\?[^}]+\}$/, 'KEY_ENCRYPTION_KEY from the host env')
  const mounts = Array.isArray(embedded.volumes) ? embedded.volumes.map(String) : []
  const data = mounts.find((m) => m.endsWith(':/app/data'))
  t.ok(data, 'a volume at /app/data')
  const name = data?.split(':')[0] ?? ''
  t.ok(isObj(compose.volumes) && name in compose.volumes, `the named volume ${name} is declared`)
  for (const n of ['migrate', 'tessera']) t.ok(envOf(obj(services[n], n)).has('DATABASE_URL'), `${n} stays on PostgreSQL`)
})

t.test('docker-compose.yml: no secrets or stray interpolation', async (t) => {
  const code = composeText
    .split(/\r?\n/)
    .filter((l) => !/^\s*#/.test(l))
    .map((l) => l.replace(/\s+#.*$/, ''))
  const secretLooking: string[] = []
  const literalKek: string[] = []
  const strayDollar: string[] = []
  for (const l of code) {
    // Long base64/base64url/hex runs look like key material.
    if (/[A-Za-z0-9+/_-]{40,}={0,2}/.test(l)) secretLooking.push(l.trim())
    const kek = /KEY_ENCRYPTION_KEY\s*[:=]\s*["']?(.*)$/.exec(l)
    if (kek && !/^\$\{KEY_ENCRYPTION_KEY:\?/.test(kek[1] ?? '')) literalKek.push(l.trim())
    // Every `$` is either an escaped `$$` or the required KEK interpolation.
    const rest = l.replace(/\$\$/g, '').replace(/\$\{KEY_ENCRYPTION_KEY:\?[^}]+\}/g, '')
    if (rest.includes('$')) strayDollar.push(l.trim())
  }
  t.same(secretLooking, [], 'no secret-looking literal (long base64/hex run)')
  t.same(literalKek, [], 'KEY_ENCRYPTION_KEY is never a literal value')
  t.same(strayDollar, [], 'no unintended ${...} interpolation')
})
