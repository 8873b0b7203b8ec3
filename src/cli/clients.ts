import type { Config } from '../config.js'
import { CLI_CONTEXT } from '../audit/context.js'
import type { Client } from '../clients/client.js'
import { createClient, listClients } from '../clients/clients.store.js'
import { disableClient } from '../clients/disable-client.js'
import { GRANT_TYPES, type GrantType } from '../grants/grant-types.js'
import { CliError, list, parseOptions, printJson, type CliIo } from './io.js'
import { withDatabase } from './with-db.js'

function describe(c: Client) {
  return {
    client_id: c.id,
    name: c.name,
    type: c.isPublic ? 'public' : 'confidential',
    grant_types: c.grantTypes,
    scopes: c.scopes,
    audience: c.audience,
    refresh_delivery: c.refreshDelivery,
    allowed_origins: c.allowedOrigins,
    disabled: c.disabled,
    created_at: c.createdAt,
  }
}

/** `tessera clients create|list|disable`. */
export async function clientsCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'create': {
      const o = parseOptions(rest, {
        name: { type: 'string' },
        public: { type: 'boolean' },
        'grant-types': { type: 'string' },
        scopes: { type: 'string' },
        audience: { type: 'string' },
        'refresh-delivery': { type: 'string' },
        'allowed-origins': { type: 'string' },
      })
      if (!o.name) throw new CliError('clients create needs --name')
      const grantTypes = list(o['grant-types'])
      if (grantTypes.length === 0) throw new CliError(`clients create needs --grant-types (any of ${GRANT_TYPES.join(', ')})`)
      const unknown = grantTypes.filter((g) => !(GRANT_TYPES as readonly string[]).includes(g))
      if (unknown.length > 0) throw new CliError(`unknown grant type: ${unknown.join(', ')} (known: ${GRANT_TYPES.join(', ')})`)
      if (o.public && grantTypes.includes('client_credentials')) throw new CliError('a public client cannot use client_credentials')
      const delivery = o['refresh-delivery']
      if (delivery !== undefined && delivery !== 'body' && delivery !== 'cookie') throw new CliError('--refresh-delivery must be body or cookie')
      const origins = list(o['allowed-origins'])
      for (const origin of origins) {
        let ok = false
        try { ok = new URL(origin).origin === origin } catch { ok = false }
        if (!ok) throw new CliError(`not an origin (scheme://host[:port], no path): ${origin}`)
      }
      if (delivery === 'cookie' && origins.length === 0) throw new CliError('cookie delivery needs --allowed-origins (the browser app origins allowed to refresh)')
      const scopes = list(o.scopes)
      if (scopes.some((s) => !/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s))) throw new CliError('scopes must be RFC 6749 scope tokens')
      const { client, secret } = await withDatabase(config, (db) =>
        createClient(db, {
          name: o.name!,
          isPublic: o.public ?? false,
          grantTypes: grantTypes as GrantType[],
          scopes,
          audience: list(o.audience),
          allowedOrigins: origins,
          ...(delivery ? { refreshDelivery: delivery } : {}),
        }),
      )
      // The secret is shown this once; only its hash is stored.
      printJson(io, { ...describe(client), ...(secret ? { client_secret: secret } : {}) })
      return 0
    }
    case 'list': {
      parseOptions(rest, {})
      printJson(io, (await withDatabase(config, listClients)).map(describe))
      return 0
    }
    case 'disable': {
      const o = parseOptions(rest, { id: { type: 'string' } })
      if (!o.id) throw new CliError('clients disable needs --id')
      if (!(await withDatabase(config, (db) => disableClient(db, o.id!, CLI_CONTEXT)))) throw new CliError(`no client ${o.id}`)
      printJson(io, { client_id: o.id, disabled: true })
      return 0
    }
    default:
      throw new CliError('usage: tessera clients create|list|disable')
  }
}
