import { listAuditEvents } from '../audit/audit.store.js'
import type { Config } from '../config.js'
import { parseAuditFilter } from '../sessions/params.js'
import { CliError, parseCommand, printList, type CliIo } from './io.js'
import { cliUser } from './sessions.js'
import { withDatabase } from './with-db.js'

/** `tessera audit list`: events newest first, one page; `--cursor` takes the last id shown. */
export async function auditCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  if (sub !== 'list') throw new CliError('usage: tessera audit list [--type T] [--username U] [--family F] [--client C] [--since ISO] [--until ISO] [--limit N] [--cursor ID]')
  const o = parseCommand('audit list', rest)
  const filter = parseAuditFilter(o, (name) => `--${name}`)
  const page = await withDatabase(config, async (db) => {
    if (o.username !== undefined) filter.userId = (await cliUser(db, o.username, 'audit list')).id
    return listAuditEvents(db, filter)
  })
  printList(io, page.events, o.format)
  return 0
}
