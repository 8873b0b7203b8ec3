import { ConfigError, loadConfig } from '../config.js'
import { auditCommand } from './audit.js'
import { clientsCommand } from './clients.js'
import { housekeepingCommand } from './housekeeping.js'
import { keysCommand } from './keys.js'
import { migrateCommand } from './migrate.js'
import { serveCommand } from './serve.js'
import { sessionsCommand } from './sessions.js'
import { usersCommand } from './users.js'
import { InputError } from '../errors.js'
import { CliError, type CliIo } from './io.js'

const USAGE = `usage: tessera <command>

  migrate                              apply database migrations
  serve                                start the HTTP server
  users create --username U --password-stdin [--roles a,b]
  users list
  users disable --username U
  clients create --name N [--public] --grant-types g1,g2 --scopes s1,s2
                 [--audience a1,a2] [--refresh-delivery body|cookie] [--allowed-origins o1,o2]
  clients list
  clients disable --id ID
  keys list
  keys rotate [--alg ES256|RS256|PS256|EdDSA] [--now]
  keys revoke KID [--reason TEXT]
  keys import --file key.pem|key.json [--alg A] [--state pending|active|retired]
  keys rewrap
  sessions list --username U [--all]
  sessions revoke --id FAMILY
  sessions revoke-all --username U
  audit list [--type T] [--username U] [--family F] [--client C]
             [--since ISO] [--until ISO] [--limit N] [--cursor ID]
  housekeeping run                     delete dead sessions, denylist and audit rows now

Configuration comes from the environment (see .env.example).`

/** Runs the CLI; returns the exit code. */
export async function run(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const [command, ...rest] = argv
  try {
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      io.out(USAGE)
      return command === undefined ? 2 : 0
    }
    const config = loadConfig(io.env)
    switch (command) {
      case 'migrate':
        return await migrateCommand(config, io)
      case 'serve':
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
      default:
        throw new CliError(`unknown command: ${command}\n\n${USAGE}`)
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
