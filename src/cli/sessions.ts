import { CLI_CONTEXT } from '../audit/context.js'
import type { Config } from '../config.js'
import type { Executor } from '../db/schema.js'
import { parseSessionCursor, parseUuid } from '../sessions/params.js'
import { revokeAllSessions, revokeSession } from '../sessions/revoke-sessions.js'
import { findSession, findUserRef, listSessions, SESSIONS_MAX_LIMIT, type Session } from '../sessions/sessions.store.js'
import { CliError, parseCommand, printJson, printList, type CliIo } from './io.js'
import { withDatabase } from './with-db.js'

/** The user named by `--username`, or a usage error. */
export async function cliUser(db: Executor, username: string | undefined, command: string) {
  if (!username) throw new CliError(`${command} needs --username`)
  const user = await findUserRef(db, { username })
  if (!user) throw new CliError(`no user ${username}`)
  return user
}

/** `tessera sessions list|revoke|revoke-all`. */
export async function sessionsCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'list': {
      const o = parseCommand('sessions list', rest)
      if (!o.username) throw new CliError('sessions list needs --username')
      const sessions = await withDatabase(config, async (db) => {
        const user = await cliUser(db, o.username, 'sessions list')
        const all: Session[] = []
        let cursor: string | null = null
        do {
          const page: Awaited<ReturnType<typeof listSessions>> = await listSessions(db, user.id, {
            includeDead: o.all ?? false,
            limit: SESSIONS_MAX_LIMIT,
            cursor: cursor === null ? undefined : parseSessionCursor(cursor),
          })
          all.push(...page.sessions)
          cursor = page.nextCursor
        } while (cursor !== null)
        return all
      })
      printList(io, sessions, o.format)
      return 0
    }
    case 'revoke': {
      const o = parseCommand('sessions revoke', rest)
      if (!o.id) throw new CliError('sessions revoke needs --id')
      const id = parseUuid(o.id, '--id')
      const revoked = await withDatabase(config, async (db) => {
        if (!(await findSession(db, id))) throw new CliError(`no session ${id}`)
        return revokeSession(db, id, CLI_CONTEXT)
      })
      printJson(io, { id, revoked })
      return 0
    }
    case 'revoke-all': {
      const o = parseCommand('sessions revoke-all', rest)
      if (!o.username) throw new CliError('sessions revoke-all needs --username')
      const result = await withDatabase(config, async (db) => {
        const user = await cliUser(db, o.username, 'sessions revoke-all')
        return { username: user.username, revoked: await revokeAllSessions(db, user.id, CLI_CONTEXT) }
      })
      printJson(io, result)
      return 0
    }
    default:
      throw new CliError('usage: tessera sessions list|revoke|revoke-all')
  }
}
