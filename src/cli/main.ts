import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, loadConfig } from '../config.js'
import { auditCommand } from './audit.js'
import { clientsCommand } from './clients.js'
import { devCommand } from './dev.js'
import { doctorCommand } from './doctor.js'
import { housekeepingCommand } from './housekeeping.js'
import { keysCommand } from './keys.js'
import { migrateCommand } from './migrate.js'
import { serveCommand } from './serve.js'
import { sessionsCommand } from './sessions.js'
import { throttleCommand } from './throttle.js'
import { usersCommand } from './users.js'
import { consentsCommand, ssoSessionsCommand } from './sso.js'
import { InputError } from '../errors.js'
import { CliError, parseCommand, type CliIo } from './io.js'
import { closest, commandHelp, COMMANDS, groupHelp, mainHelp, subcommands, topLevel, type CommandName } from './commands.js'
import { takeWaitOption } from './with-change.js'

/** The version in package.json (found upwards from this file: src/cli or dist/src/cli). */
export function version(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 4; i++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'tessera' && pkg.version) return pkg.version
    } catch { /* not here */ }
  }
  return 'unknown'
}

const wantsHelp = (args: string[]) => {
  const end = args.indexOf('--')
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h')
}

/** The command that `words` name (`users create`), or a usage error naming the closest one. */
function resolve(words: string[]): CommandName | { group: string } {
  const [word, sub] = words
  const tops = topLevel()
  if (word === undefined || !tops.includes(word)) {
    const near = word === undefined ? undefined : closest(word, tops)
    throw new CliError(`unknown command: ${word}${near ? `; did you mean ${near}?` : ''} (tessera --help lists the commands)`)
  }
  if (word in COMMANDS) return word as CommandName
  const subs = subcommands(word).map((n) => n.slice(word.length + 1))
  if (sub === undefined || sub.startsWith('-')) return { group: word }
  if (!subs.includes(sub)) {
    const near = closest(sub, subs)
    throw new CliError(`unknown command: ${word} ${sub}${near ? `; did you mean ${word} ${near}?` : ''} (tessera ${word} --help lists its commands)`)
  }
  return `${word} ${sub}` as CommandName
}

/** Runs the CLI; returns the exit code. */
export async function run(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const [command, ...given] = argv
  try {
    if (command === '--version' || command === '-V' || command === 'version') {
      io.out(version())
      return 0
    }
    if (command === undefined) {
      io.err(mainHelp())
      return 2
    }
    if (command === 'help' || command === '--help' || command === '-h') {
      const words = given.filter((a) => !a.startsWith('-'))
      if (words.length === 0) {
        io.out(mainHelp())
        return 0
      }
      const target = resolve(words)
      io.out(typeof target === 'string' ? commandHelp(target) : groupHelp(target.group))
      return 0
    }
    const target = resolve(argv)
    if (wantsHelp(given)) {
      io.out(typeof target === 'string' ? commandHelp(target) : groupHelp(target.group))
      return 0
    }
    if (typeof target !== 'string') {
      io.err(groupHelp(target.group))
      return 2
    }
    // The doctor reports a bad configuration instead of stopping at it.
    if (command === 'doctor') return await doctorCommand(io.env, given, io)
    // `--wait S` of a change command overrides PROPAGATION_WAIT_SECONDS (README "Changes reach every instance").
    const { config, args: rest } = takeWaitOption(loadConfig(io.env), command, given)
    switch (command) {
      case 'migrate':
        parseCommand('migrate', rest)
        return await migrateCommand(config, io)
      case 'serve':
        parseCommand('serve', rest)
        return await serveCommand(config)
      case 'users':
        return await usersCommand(config, rest, io)
      case 'clients':
        return await clientsCommand(config, rest, io)
      case 'keys':
        return await keysCommand(config, rest, io)
      case 'sessions':
        return await sessionsCommand(config, rest, io)
      case 'housekeeping':
        return await housekeepingCommand(config, rest, io)
      case 'audit':
        return await auditCommand(config, rest, io)
      case 'throttle':
        return await throttleCommand(config, rest, io)
      case 'dev':
        return await devCommand(config, rest, io)
      // --- authorization-code flow (issue 13)
      case 'sso-sessions':
        return await ssoSessionsCommand(config, rest, io)
      case 'consents':
        return await consentsCommand(config, rest, io)
      // ---
      default:
        throw new CliError(`unknown command: ${command}`)
    }
  } catch (err) {
    if (err instanceof InputError || err instanceof ConfigError) {
      io.err(`tessera: ${err.message}`)
      return 2
    }
    io.err(`tessera: ${err instanceof Error ? err.message : String(err)}`)
    return 1
  }
}

function defaultIo(): CliIo {
  return {
    env: process.env,
    out: (s) => process.stdout.write(s + '\n'),
    err: (s) => process.stderr.write(s + '\n'),
    readStdin: async () => {
      const chunks: Buffer[] = []
      for await (const c of process.stdin) chunks.push(c as Buffer)
      return Buffer.concat(chunks).toString('utf8')
    },
  }
}
