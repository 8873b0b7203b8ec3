import type { Config } from '../config.js'
import { keyPolicy } from '../keys/policy.js'
import { CLI_CONTEXT } from '../audit/context.js'
import { listClients } from '../clients/clients.store.js'
import { CLI_NAMES, parseClientSettings, resolveNewClient } from '../clients/client-settings.js'
import { clientJson } from '../clients/client-view.js'
import { disableClient } from '../clients/disable-client.js'
import { MAX_SECRET_OVERLAP_SECONDS, registerClient, rotateClientSecret } from '../clients/manage-clients.js'
import { systemClock } from '../clock.js'
import { GRANT_TYPES } from '../grants/grant-types.js'
import { CliError, list, parseCommand, printJson, printList, type CliIo } from './io.js'
import { withChange } from './with-change.js'
import { withDatabase } from './with-db.js'

const USAGE = 'usage: tessera clients create|list|disable|rotate-secret'

/** A comma-separated option as a list, or absent. */
const listOption = (v: string | undefined) => (v === undefined ? undefined : list(v))

/** `tessera clients create|list|disable|rotate-secret`. */
export async function clientsCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'create': {
      const o = parseCommand('clients create', rest)
      if (!o.name) throw new CliError('clients create needs --name')
      if (list(o['grant-types']).length === 0) throw new CliError(`clients create needs --grant-types (any of ${GRANT_TYPES.join(', ')})`)
      const rate = o['rate-limit']
      // The same parsing and checks as POST /admin/clients (src/clients/client-settings.ts).
      const settings = resolveNewClient(
        parseClientSettings(
          {
            name: o.name,
            public: o.public,
            grant_types: listOption(o['grant-types']),
            scopes: listOption(o.scopes),
            audience: listOption(o.audience),
            refresh_delivery: o['refresh-delivery'],
            allowed_origins: listOption(o['allowed-origins']),
            id_token_signed_response_alg: o['id-token-signed-response-alg'],
            // A number only when it is one: anything else is refused with the option named.
            rate_limit_per_second: rate === undefined ? undefined : /^\d{1,7}$/.test(rate) ? Number(rate) : rate,
            redirect_uris: listOption(o['redirect-uris']),
            post_logout_redirect_uris: listOption(o['post-logout-redirect-uris']),
            first_party: o['first-party'],
            backchannel_logout_uri: o['backchannel-logout-uri'],
            require_pushed_authorization_requests: o['require-par'],
          },
          CLI_NAMES,
        ),
        CLI_NAMES,
      )
      const lines = keyPolicy(config).lines
      const { client, secret } = await withDatabase(config, (db) => registerClient(db, settings, { lines, names: CLI_NAMES, ctx: CLI_CONTEXT }))
      // The secret is shown this once; only its hash is stored.
      printJson(io, { ...clientJson(client), ...(secret ? { client_secret: secret } : {}) })
      return 0
    }
    case 'rotate-secret': {
      const [id, ...more] = rest
      if (id === undefined || id.startsWith('-')) throw new CliError('usage: tessera clients rotate-secret ID [--overlap SECONDS]')
      const o = parseCommand('clients rotate-secret', more)
      let overlapSeconds = config.clientSecretOverlapSeconds
      if (o.overlap !== undefined) {
        if (!/^\d{1,7}$/.test(o.overlap) || Number(o.overlap) > MAX_SECRET_OVERLAP_SECONDS) throw new CliError(`--overlap must be a whole number of seconds from 0 to ${MAX_SECRET_OVERLAP_SECONDS}`)
        overlapSeconds = Number(o.overlap)
      }
      const { result, propagation } = await withChange(
        config,
        io,
        (db) => rotateClientSecret(db, id, { overlapSeconds, nowMs: systemClock.nowMs(), ctx: CLI_CONTEXT }),
        (r) => r.kind !== 'done',
      )
      if (result.kind !== 'done') throw new CliError(`no client ${id}`)
      const { client, secret, previousExpiresAt } = result.value
      // The new secret is shown this once; the old one works until previous_secret_expires_at.
      printJson(io, { client_id: client.id, client_secret: secret, previous_secret_expires_at: previousExpiresAt, overlap_seconds: overlapSeconds, propagation })
      return 0
    }
    case 'list': {
      const o = parseCommand('clients list', rest)
      printList(io, (await withDatabase(config, listClients)).map(clientJson), o.format)
      return 0
    }
    case 'disable': {
      const o = parseCommand('clients disable', rest)
      if (!o.id) throw new CliError('clients disable needs --id')
      const { result: found, propagation } = await withChange(config, io, (db) => disableClient(db, o.id!, CLI_CONTEXT), (found) => !found)
      if (!found) throw new CliError(`no client ${o.id}`)
      // `propagation`: which instances refuse the client now (README "Changes reach every instance").
      printJson(io, { client_id: o.id, disabled: true, propagation })
      return 0
    }
    default:
      throw new CliError(USAGE)
  }
}
