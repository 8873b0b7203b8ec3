import { CLI_CONTEXT } from '../audit/context.js'
import { listConsents } from '../authorization/authorization.store.js'
import { revokeConsents } from '../authorization/consents.js'
import { BackchannelLogout, type Delivery } from '../authorization/backchannel-logout.js'
import { endSsoSessions, type EndedSession } from '../authorization/sso-session.js'
import { systemClock } from '../clock.js'
import type { Db } from '../db/schema.js'
import { resolveKek, resolveKeks } from '../keys/kek.js'
import { Keyring } from '../keys/keyring.js'
import { keyPolicy } from '../keys/policy.js'
import { TokenIssuer } from '../tokens/token-issuer.js'
import { listSsoSessions, ssoSessionUser } from '../authorization/sso-sessions.store.js'
import type { Config } from '../config.js'
import { parseUuid } from '../sessions/params.js'
import { CliError, parseCommand, printJson, printList, type CliIo } from './io.js'
import { cliUser } from './sessions.js'
import { withDatabase } from './with-db.js'

/**
 * OIDC Back-Channel Logout for sessions the CLI ended (after the commit), as the server does: the
 * CLI signs the logout tokens with the active keys (it holds the KEK like the server) and waits
 * for the deliveries, so its output says which clients were told.
 */
async function notifyClients(config: Config, db: Db, ended: readonly EndedSession[], io: CliIo): Promise<{ client_id: string; ok: boolean; attempts: number; status?: number | undefined }[]> {
  if (!ended.some((e) => e.backchannel.length > 0)) return []
  const keyring = new Keyring(db, resolveKeks(config, resolveKek(config, (msg) => io.err(msg))), { policy: keyPolicy(config), clock: systemClock })
  await keyring.reload()
  const tokens = new TokenIssuer(keyring, config.issuer, config.accessTokenTtlSeconds, systemClock)
  const log = { info: () => undefined, warn: (obj: object, msg: string) => io.err(`${msg}: ${JSON.stringify(obj)}`) }
  const deliveries: Delivery[] = await new BackchannelLogout(tokens, { timeoutMs: config.backchannelLogoutTimeoutMs, retries: config.backchannelLogoutRetries }, log).notify(ended)
  return deliveries.map((d) => ({ client_id: d.clientId, ok: d.ok, attempts: d.attempts, ...(d.status !== undefined ? { status: d.status } : {}) }))
}

/**
 * `tessera sso-sessions list|revoke|revoke-all`. Ending a session revokes its refresh-token
 * families and tells the clients that registered a back-channel logout URI.
 */
export async function ssoSessionsCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'list': {
      const o = parseCommand('sso-sessions list', rest)
      printList(io, await withDatabase(config, async (db) => listSsoSessions(db, (await cliUser(db, o.username, 'sso-sessions list')).id, o.all ?? false)), o.format)
      return 0
    }
    case 'revoke': {
      const o = parseCommand('sso-sessions revoke', rest)
      if (!o.id) throw new CliError('sso-sessions revoke needs --id')
      const id = parseUuid(o.id, '--id')
      const { ended, backchannel } = await withDatabase(config, async (db) => {
        if (!(await ssoSessionUser(db, id))) throw new CliError(`no SSO session ${id}`)
        const ended = await endSsoSessions(db, { id }, 'admin', CLI_CONTEXT)
        return { ended, backchannel: await notifyClients(config, db, ended, io) }
      })
      printJson(io, { id, ended: ended.length === 1, revoked_families: ended[0]?.revokedFamilies ?? 0, backchannel })
      return 0
    }
    case 'revoke-all': {
      const o = parseCommand('sso-sessions revoke-all', rest)
      const { ended, backchannel } = await withDatabase(config, async (db) => {
        const ended = await endSsoSessions(db, { userId: (await cliUser(db, o.username, 'sso-sessions revoke-all')).id }, 'admin', CLI_CONTEXT)
        return { ended, backchannel: await notifyClients(config, db, ended, io) }
      })
      printJson(io, { username: o.username!.toLowerCase(), ended: ended.length, backchannel })
      return 0
    }
    default:
      throw new CliError('usage: tessera sso-sessions list|revoke|revoke-all')
  }
}

/** `tessera consents list|revoke`. */
export async function consentsCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'list': {
      const o = parseCommand('consents list', rest)
      printList(io, await withDatabase(config, async (db) => listConsents(db, (await cliUser(db, o.username, 'consents list')).id)), o.format)
      return 0
    }
    case 'revoke': {
      const o = parseCommand('consents revoke', rest)
      const revoked = await withDatabase(config, async (db) => revokeConsents(db, (await cliUser(db, o.username, 'consents revoke')).id, o.client, CLI_CONTEXT))
      printJson(io, { username: o.username!.toLowerCase(), revoked })
      return 0
    }
    default:
      throw new CliError('usage: tessera consents list|revoke')
  }
}
