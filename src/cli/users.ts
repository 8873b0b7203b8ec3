import type { Config } from '../config.js'
import { passwordPolicyProblem, PasswordHasher } from '../users/passwords.js'
import { CLI_CONTEXT } from '../audit/context.js'
import { disableUser } from '../users/disable-user.js'
import { createUser, listUsers } from '../users/users.store.js'
import { CliError, list, parseOptions, printJson, type CliIo } from './io.js'
import { withDatabase } from './with-db.js'

/** `tessera users create|list|disable`. */
export async function usersCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'create': {
      const o = parseOptions(rest, { username: { type: 'string' }, 'password-stdin': { type: 'boolean' }, roles: { type: 'string' } })
      if (!o.username) throw new CliError('users create needs --username')
      if (!/^[\p{L}\p{N}._@+-]{1,256}$/u.test(o.username)) throw new CliError('username may contain letters, digits and . _ @ + - (at most 256)')
      // Never a password on the command line: it would land in shell history and `ps`.
      if (!o['password-stdin']) throw new CliError('users create needs --password-stdin (the password is read from standard input)')
      const password = (await io.readStdin()).replace(/\r?\n$/, '')
      const problem = passwordPolicyProblem(password, o.username)
      if (problem) throw new CliError(problem)
      const passwordHash = await new PasswordHasher(config.argon2).hash(password)
      const user = await withDatabase(config, (db) => createUser(db, { username: o.username!, passwordHash, roles: list(o.roles) }))
      if (!user) throw new CliError(`user ${o.username} already exists`)
      printJson(io, { id: user.id, username: user.username, roles: user.roles })
      return 0
    }
    case 'list': {
      parseOptions(rest, {})
      const users = await withDatabase(config, listUsers)
      printJson(io, users.map((u) => ({ id: u.id, username: u.username, roles: u.roles, disabled: u.disabled, created_at: u.createdAt })))
      return 0
    }
    case 'disable': {
      const o = parseOptions(rest, { username: { type: 'string' } })
      if (!o.username) throw new CliError('users disable needs --username')
      const found = await withDatabase(config, (db) => disableUser(db, o.username!, CLI_CONTEXT))
      if (!found) throw new CliError(`no user ${o.username}`)
      printJson(io, { username: o.username.toLowerCase(), disabled: true })
      return 0
    }
    default:
      throw new CliError('usage: tessera users create|list|disable')
  }
}
