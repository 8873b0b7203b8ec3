import type { Config } from '../config.js'
import { passwordPolicyProblem, PasswordHasher } from '../users/passwords.js'
import { CLI_CONTEXT } from '../audit/context.js'
import { disableUser } from '../users/disable-user.js'
import { createUser, listUsers, updateUserProfile } from '../users/users.store.js'
import { normalizeUsername, type UserProfile } from '../users/user.js'
import { parseProfile, parseRoles, parseUsername } from '../users/user-input.js'

/**
 * The profile options of `users create|update` (OIDC Core §5.1 claims), validated by the same
 * functions as the admin API (`users/user-input.ts`); '' clears an attribute.
 */
function profileOptions(o: { name?: string | undefined; email?: string | undefined }, verified: boolean | undefined): Partial<UserProfile> {
  return parseProfile({ name: o.name, email: o.email, emailVerified: verified }, { name: '--name', email: '--email', emailVerified: '--email-verified' })
}
import { CliError, list, parseCommand, printJson, printList, type CliIo } from './io.js'
import { withChange } from './with-change.js'
import { withDatabase } from './with-db.js'

/** `tessera users create|list|disable`. */
export async function usersCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'create': {
      const o = parseCommand('users create', rest)
      const profile = profileOptions(o, o['email-verified'])
      if (!o.username) throw new CliError('users create needs --username')
      // The one username rule of the admin API too (Unicode NFKC, lower case; users/user-input.ts).
      const username = parseUsername(o.username)
      const roles = parseRoles(list(o.roles), '--roles')
      // Never a password on the command line: it would land in shell history and `ps`.
      if (!o['password-stdin']) throw new CliError('users create needs --password-stdin (the password is read from standard input)')
      const password = (await io.readStdin()).replace(/\r?\n$/, '')
      const problem = await passwordPolicyProblem(password, username)
      if (problem) throw new CliError(problem)
      const passwordHash = await new PasswordHasher(config.argon2).hash(password)
      const user = await withDatabase(config, async (db) => {
        const created = await createUser(db, { username, passwordHash, roles })
        if (created && Object.keys(profile).length > 0) await updateUserProfile(db, created.username, profile)
        return created && { ...created, profile: { ...created.profile, ...profile } }
      })
      if (!user) throw new CliError(`user ${o.username} already exists`)
      printJson(io, { id: user.id, username: user.username, roles: user.roles, ...describeProfile(user.profile) })
      return 0
    }
    case 'update': {
      const o = parseCommand('users update', rest)
      if (!o.username) throw new CliError('users update needs --username')
      const v = o['email-verified']
      if (v !== undefined && v !== 'true' && v !== 'false') throw new CliError('--email-verified must be true or false')
      const profile = profileOptions(o, v === undefined ? undefined : v === 'true')
      if (Object.keys(profile).length === 0) throw new CliError('users update needs --name, --email or --email-verified')
      // Profile claims are read from the database on every request: nothing cached to wait for.
      const found = await withDatabase(config, (db) => updateUserProfile(db, o.username!, profile))
      if (!found) throw new CliError(`no user ${o.username}`)
      printJson(io, { username: normalizeUsername(o.username), updated: Object.keys(profile).map((k) => (k === 'emailVerified' ? 'email_verified' : k)) })
      return 0
    }
    case 'list': {
      const o = parseCommand('users list', rest)
      const users = await withDatabase(config, listUsers)
      printList(io, users.map((u) => ({ id: u.id, username: u.username, roles: u.roles, ...describeProfile(u.profile), disabled: u.disabled, created_at: u.createdAt })), o.format)
      return 0
    }
    case 'disable': {
      const o = parseCommand('users disable', rest)
      if (!o.username) throw new CliError('users disable needs --username')
      const { result: found, propagation } = await withChange(config, io, (db) => disableUser(db, o.username!, CLI_CONTEXT), (found) => !found)
      if (!found) throw new CliError(`no user ${o.username}`)
      printJson(io, { username: normalizeUsername(o.username), disabled: true, propagation })
      return 0
    }
    default:
      throw new CliError('usage: tessera users create|update|list|disable')
  }
}

function describeProfile(p: UserProfile) {
  return { name: p.name, email: p.email, email_verified: p.emailVerified }
}
