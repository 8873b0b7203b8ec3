import { ID_TOKEN_DEFAULT_ALG, type Config } from '../config.js'
import { parseSigningAlg } from '../keys/key-params.js'
import { findKeyIn } from '../keys/keys.store.js'
import { keyPolicy } from '../keys/policy.js'
import { CLI_CONTEXT } from '../audit/context.js'
import type { Client } from '../clients/client.js'
import { createClient, listClients } from '../clients/clients.store.js'
import { disableClient } from '../clients/disable-client.js'
import { checkBackchannelUri, checkRedirectUri } from '../clients/redirect-uris.js'
import { GRANT_TYPES, type GrantType } from '../grants/grant-types.js'
import { CliError, list, parseCommand, printJson, printList, type CliIo } from './io.js'
import { withChange } from './with-change.js'
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
    id_token_signed_response_alg: c.idTokenSignedResponseAlg,
    rate_limit_per_second: c.rateLimitPerSecond,
    // --- authorization-code flow (issue 13)
    redirect_uris: c.redirectUris,
    post_logout_redirect_uris: c.postLogoutRedirectUris,
    first_party: c.firstParty,
    backchannel_logout_uri: c.backchannelLogoutUri,
    require_pushed_authorization_requests: c.requirePushedAuthorizationRequests,
    // ---
    disabled: c.disabled,
    created_at: c.createdAt,
  }
}

/** `tessera clients create|list|disable`. */
export async function clientsCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'create': {
      const o = parseCommand('clients create', rest)
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
      // OIDC Dynamic Client Registration §2: RS256 unless the client names another key line.
      const idTokenAlg = parseSigningAlg(o['id-token-signed-response-alg'], '--id-token-signed-response-alg') ?? ID_TOKEN_DEFAULT_ALG
      // Its own /token rate (requests per second per instance); absent = CLIENT_RATE_LIMIT_PER_SECOND.
      const rate = o['rate-limit']
      if (rate !== undefined && (!/^\d{1,7}$/.test(rate) || Number(rate) > 1_000_000)) throw new CliError('--rate-limit must be an integer from 0 (no limit) to 1000000 (requests per second)')
      const redirectUris = list(o['redirect-uris']).map((u) => checkRedirectUri(u, '--redirect-uris'))
      const postLogoutRedirectUris = list(o['post-logout-redirect-uris']).map((u) => checkRedirectUri(u, '--post-logout-redirect-uris'))
      if (grantTypes.includes('authorization_code') && redirectUris.length === 0) throw new CliError('authorization_code needs --redirect-uris')
      const backchannel = o['backchannel-logout-uri'] === undefined ? null : checkBackchannelUri(o['backchannel-logout-uri'])
      const lines = keyPolicy(config).lines
      const { client, secret } = await withDatabase(config, async (db) => {
        if (!lines.includes(idTokenAlg) && !(await findKeyIn(db, 'active', idTokenAlg))) {
          throw new CliError(`no ${idTokenAlg} key line signs here: start one with \`tessera keys rotate --alg ${idTokenAlg} --now\`, or pick one of ${lines.join(', ')}`)
        }
        return createClient(db, {
          name: o.name!,
          isPublic: o.public ?? false,
          grantTypes: grantTypes as GrantType[],
          scopes,
          audience: list(o.audience),
          allowedOrigins: origins,
          idTokenSignedResponseAlg: idTokenAlg,
          rateLimitPerSecond: rate === undefined ? null : Number(rate),
          redirectUris,
          postLogoutRedirectUris,
          firstParty: o['first-party'] ?? false,
          backchannelLogoutUri: backchannel,
          requirePushedAuthorizationRequests: o['require-par'] ?? false,
          ...(delivery ? { refreshDelivery: delivery } : {}),
        })
      })
      // The secret is shown this once; only its hash is stored.
      printJson(io, { ...describe(client), ...(secret ? { client_secret: secret } : {}) })
      return 0
    }
    case 'list': {
      const o = parseCommand('clients list', rest)
      printList(io, (await withDatabase(config, listClients)).map(describe), o.format)
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
      throw new CliError('usage: tessera clients create|list|disable')
  }
}
