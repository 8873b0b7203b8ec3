// `tessera --help`, `--version`, per-command help, typos and exit codes (issue 16), in-process.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { allOptions, COMMANDS, subcommands, topLevel, type CommandName } from '../../src/cli/commands.js'
import { testApp, testEnv } from '../helpers/app.js'
import { runTessera } from '../helpers/cli.js'

const env = testEnv({})
const cli = (args: string[], e = env) => runTessera(args, e)
const NAMES = Object.keys(COMMANDS) as CommandName[]
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

t.test('--version, -V and version print the package version, exit 0', async (t) => {
  for (const arg of ['--version', '-V', 'version']) {
    const r = await cli([arg])
    t.equal(r.code, 0, arg)
    t.equal(r.out, pkg.version, arg)
  }
})

t.test('--help, -h and help list every command; no command at all is a usage error (exit 2, help on stderr)', async (t) => {
  for (const arg of ['--help', '-h', 'help']) {
    const r = await cli([arg])
    t.equal(r.code, 0, arg)
    for (const name of NAMES) t.match(r.out, `  ${name} `, `${arg} lists ${name}`)
    t.match(r.out, /-V, --version/)
    t.match(r.out, /exit codes: 0 success, 1 failure .*, 2 usage/)
  }
  const none = await cli([])
  t.equal(none.code, 2)
  t.equal(none.out, '')
  t.match(none.err, /usage: tessera <command>/)
})

t.test('every command answers --help (and help CMD) with every option, its default and an example; no configuration needed', async (t) => {
  // A broken configuration does not stand in the way of help.
  const broken = testEnv({ PORT: 'not-a-port' })
  for (const name of NAMES) {
    const words = name.split(' ')
    for (const args of [[...words, '--help'], [...words, '-h'], ['help', ...words]]) {
      const r = await cli(args, broken)
      t.equal(r.code, 0, args.join(' '))
      t.ok(r.out.startsWith(`tessera ${name}: ${COMMANDS[name].summary}`), `${args.join(' ')}: title`)
    }
    const help = (await cli([...words, '--help'], broken)).out
    for (const [option, spec] of Object.entries(allOptions(name))) {
      t.match(help, `--${option}`, `${name}: --${option}`)
      t.match(help, spec.description, `${name}: --${option} described`)
      if (spec.default !== undefined) t.match(help, `default: ${spec.default}`, `${name}: --${option} default`)
    }
    t.ok(COMMANDS[name].examples.length > 0, `${name} has an example`)
    for (const example of COMMANDS[name].examples) t.match(help, example)
    t.match(help, /usage: tessera /)
    t.match(help, /exit codes: /)
  }
})

t.test('a group word with --help lists its commands; alone, it is a usage error', async (t) => {
  for (const word of topLevel().filter((w) => subcommands(w).length > 0)) {
    const r = await cli([word, '--help'])
    t.equal(r.code, 0, word)
    for (const name of subcommands(word)) t.match(r.out, name)
    const alone = await cli([word])
    t.equal(alone.code, 2, `${word} alone`)
    t.match(alone.err, `usage: tessera ${word} <command>`)
  }
})

t.test('typos: the closest command or option is named; exit 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [['usres', 'list'], /unknown command: usres; did you mean users\?/],
    [['users', 'lst'], /unknown command: users lst; did you mean users list\?/],
    [['keys', 'rotat'], /did you mean keys rotate\?/],
    [['users', 'create', '--usrname', 'x'], /unknown option --usrname for users create; did you mean --username\?/],
    [['clients', 'create', '--grant-type', 'password'], /did you mean --grant-types\?/],
    [['keys', 'rotate', '--wiat', '3'], /did you mean --wait\?/],
    [['users', 'list', '--fromat', 'table'], /did you mean --format\?/],
    [['users', 'list', '--zzzzzzzz'], /unknown option --zzzzzzzz for users list \(tessera users list --help/],
    [['xyzzy'], /unknown command: xyzzy \(tessera --help/],
    [['keys', 'rotate', '--now=yes'], /--now takes no value/],
    [['users', 'disable', '--username'], /--username needs a value/],
    [['migrate', 'extra'], /unexpected argument for migrate: extra/],
    [['users', 'list', '--format', 'xml'], /--format must be json or table/],
  ]
  const app = await testApp(t)
  const withDb = testEnv({ DATABASE_URL: app.databaseUrl! })
  for (const [args, message] of cases) {
    const r = await cli(args, withDb)
    t.equal(r.code, 2, args.join(' '))
    t.match(r.err, message, args.join(' '))
    t.equal(r.out, '', `${args.join(' ')}: nothing on stdout`)
  }
})

t.test('exit 1 for a failure that is not a usage error (the database is unreachable)', async (t) => {
  const r = await cli(['users', 'list'], testEnv({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', DB_ACQUIRE_TIMEOUT_MS: '500' }))
  t.equal(r.code, 1)
  t.match(r.err, /^tessera: /)
})

t.test('--format table for people; JSON stays the default for scripts', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', 'correct horse battery')
  await app.createUser('bob', 'correct horse battery')
  const e = testEnv({ DATABASE_URL: app.databaseUrl! })
  const json = await cli(['users', 'list'], e)
  t.equal(json.code, 0, json.err)
  t.same(json.json().map((u: { username: string }) => u.username).sort(), ['alice', 'bob'])
  const table = await cli(['users', 'list', '--format', 'table'], e)
  t.equal(table.code, 0, table.err)
  const lines = table.out.split('\n')
  t.equal(lines.length, 3, 'a header and a line per user')
  t.match(lines[0], /^ID\s+USERNAME\s+ROLES\s+NAME\s+EMAIL\s+EMAIL_VERIFIED\s+DISABLED\s+CREATED_AT$/)
  t.ok(lines.slice(1).some((l) => /\balice\b/.test(l)) && lines.slice(1).some((l) => /\bbob\b/.test(l)))
  t.equal(lines[0]!.indexOf('USERNAME'), lines[1]!.indexOf(lines[1]!.split(/\s{2,}/)[1]!), 'columns line up')
  const keys = await cli(['keys', 'list', '--format', 'table'], e)
  t.equal(keys.code, 0, keys.err)
  t.match(keys.out, /^KID\s+/)
  const empty = await cli(['sessions', 'list', '--username', 'alice', '--format', 'table'], e)
  t.equal(empty.code, 0, empty.err)
  t.equal(empty.out, '(none)')
})
