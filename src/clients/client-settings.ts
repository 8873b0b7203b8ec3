// The settings of a client, parsed and checked one way for the admin API (`POST/PATCH
// /admin/clients`, JSON fields) and the CLI (`tessera clients create`, options): both call
// `parseClientSettings`, then `resolveNewClient` or `mergeClientSettings`, which apply the rules
// that involve several settings. Errors are InputError naming the field the way the caller wrote
// it (`body/grant_types`, `--grant-types`): 400 at the API, exit 2 at the CLI.
import { ID_TOKEN_DEFAULT_ALG, type SigningAlg } from '../config.js'
import { InputError } from '../errors.js'
import { GRANT_TYPES, type GrantType } from '../grants/grant-types.js'
import { parseSigningAlg } from '../keys/key-params.js'
import type { Client } from './client.js'
import { checkBackchannelUri, checkRedirectUri } from './redirect-uris.js'

/** Every setting of a client, by its JSON name (the API's body fields, the CLI's JSON output). */
export const CLIENT_FIELDS = [
  'name',
  'public',
  'grant_types',
  'scopes',
  'audience',
  'refresh_delivery',
  'allowed_origins',
  'id_token_signed_response_alg',
  'rate_limit_per_second',
  'redirect_uris',
  'post_logout_redirect_uris',
  'first_party',
  'backchannel_logout_uri',
  'require_pushed_authorization_requests',
] as const
export type ClientField = (typeof CLIENT_FIELDS)[number]

/** Raw settings, by JSON name: JSON values from the API, converted option values from the CLI. */
export type ClientSettingsInput = Partial<Record<ClientField, unknown>>

/** Every setting of a client, checked. */
export interface ClientSettings {
  name: string
  isPublic: boolean
  grantTypes: GrantType[]
  scopes: string[]
  audience: string[]
  refreshDelivery: 'body' | 'cookie'
  allowedOrigins: string[]
  idTokenSignedResponseAlg: SigningAlg
  rateLimitPerSecond: number | null
  redirectUris: string[]
  postLogoutRedirectUris: string[]
  firstParty: boolean
  backchannelLogoutUri: string | null
  requirePushedAuthorizationRequests: boolean
}

/** How errors name a field: `body/grant_types` at the API, `--grant-types` at the CLI. */
export interface FieldNames {
  label(field: ClientField): string
  /** Whether a message that does not start with the field's name gets it as a prefix (the API). */
  readonly prefix: boolean
}

const CLI_OPTION: Record<ClientField, string> = {
  name: 'name',
  public: 'public',
  grant_types: 'grant-types',
  scopes: 'scopes',
  audience: 'audience',
  refresh_delivery: 'refresh-delivery',
  allowed_origins: 'allowed-origins',
  id_token_signed_response_alg: 'id-token-signed-response-alg',
  rate_limit_per_second: 'rate-limit',
  redirect_uris: 'redirect-uris',
  post_logout_redirect_uris: 'post-logout-redirect-uris',
  first_party: 'first-party',
  backchannel_logout_uri: 'backchannel-logout-uri',
  require_pushed_authorization_requests: 'require-par',
}

export const API_NAMES: FieldNames = { label: (f) => `body/${f}`, prefix: true }
export const CLI_NAMES: FieldNames = { label: (f) => `--${CLI_OPTION[f]}`, prefix: false }

export const NAME_MAX = 200
export const RATE_LIMIT_MAX = 1_000_000
/** At most this many entries in any list setting (URIs, origins, scopes, audience). */
export const LIST_MAX = 100
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/

/** The settings given in `input` (absent ones stay absent), each checked on its own. */
export function parseClientSettings(input: ClientSettingsInput, names: FieldNames): Partial<ClientSettings> {
  const fail = (field: ClientField, message: string): never => {
    throw new InputError(names.prefix ? `${names.label(field)}: ${message}` : message)
  }
  const label = names.label
  const bool = (field: ClientField): boolean | undefined => {
    const v = input[field]
    if (v === undefined) return undefined
    if (typeof v !== 'boolean') throw new InputError(`${label(field)} must be true or false`)
    return v
  }
  const strings = (field: ClientField): string[] | undefined => {
    const v = input[field]
    if (v === undefined) return undefined
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s === '' || s.length > 2000)) throw new InputError(`${label(field)} must be a list of non-empty strings`)
    if (v.length > LIST_MAX) throw new InputError(`${label(field)} may have at most ${LIST_MAX} entries`)
    return [...new Set(v as string[])]
  }
  const out: Partial<ClientSettings> = {}

  if (input.name !== undefined) {
    const n = input.name
    if (typeof n !== 'string' || n.trim() === '' || n.length > NAME_MAX || /[\x00-\x1f\x7f]/.test(n)) throw new InputError(`${label('name')} must be 1 to ${NAME_MAX} characters without control characters`)
    out.name = n
  }
  const isPublic = bool('public')
  if (isPublic !== undefined) out.isPublic = isPublic
  const grantTypes = strings('grant_types')
  if (grantTypes !== undefined) {
    if (grantTypes.length === 0) throw new InputError(`${label('grant_types')} must name at least one of ${GRANT_TYPES.join(', ')}`)
    const unknown = grantTypes.filter((g) => !(GRANT_TYPES as readonly string[]).includes(g))
    if (unknown.length > 0) fail('grant_types', `unknown grant type: ${unknown.join(', ').slice(0, 200)} (known: ${GRANT_TYPES.join(', ')})`)
    out.grantTypes = grantTypes as GrantType[]
  }
  const scopes = strings('scopes')
  if (scopes !== undefined) {
    if (scopes.some((s) => !SCOPE_TOKEN.test(s))) fail('scopes', 'scopes must be RFC 6749 scope tokens')
    out.scopes = scopes
  }
  const audience = strings('audience')
  if (audience !== undefined) out.audience = audience
  if (input.refresh_delivery !== undefined) {
    const d = input.refresh_delivery
    if (d !== 'body' && d !== 'cookie') throw new InputError(`${label('refresh_delivery')} must be body or cookie`)
    out.refreshDelivery = d
  }
  const origins = strings('allowed_origins')
  if (origins !== undefined) {
    for (const origin of origins) {
      let ok = false
      try {
        ok = new URL(origin).origin === origin
      } catch {
        ok = false
      }
      if (!ok) fail('allowed_origins', `not an origin (scheme://host[:port], no path): ${origin.slice(0, 200)}`)
    }
    out.allowedOrigins = origins
  }
  // OIDC Dynamic Client Registration §2: RS256 unless the client names another key line.
  const alg = parseSigningAlg(input.id_token_signed_response_alg, label('id_token_signed_response_alg'))
  if (alg !== undefined) out.idTokenSignedResponseAlg = alg
  // Its own /token rate (requests per second per instance); null = CLIENT_RATE_LIMIT_PER_SECOND.
  if (input.rate_limit_per_second !== undefined) {
    const r = input.rate_limit_per_second
    if (r !== null && (typeof r !== 'number' || !Number.isInteger(r) || r < 0 || r > RATE_LIMIT_MAX)) {
      throw new InputError(`${label('rate_limit_per_second')} must be an integer from 0 (no limit) to ${RATE_LIMIT_MAX} (requests per second)${names.prefix ? ', or null (the default)' : ''}`)
    }
    out.rateLimitPerSecond = r
  }
  const redirectUris = strings('redirect_uris')
  if (redirectUris !== undefined) out.redirectUris = redirectUris.map((u) => checkRedirectUri(u, label('redirect_uris')))
  const postLogout = strings('post_logout_redirect_uris')
  if (postLogout !== undefined) out.postLogoutRedirectUris = postLogout.map((u) => checkRedirectUri(u, label('post_logout_redirect_uris')))
  const firstParty = bool('first_party')
  if (firstParty !== undefined) out.firstParty = firstParty
  if (input.backchannel_logout_uri !== undefined) {
    const b = input.backchannel_logout_uri
    if (b !== null && (typeof b !== 'string' || b.length > 2000)) throw new InputError(`${label('backchannel_logout_uri')} must be a URL or null`)
    out.backchannelLogoutUri = b === null ? null : checkBackchannelUri(b, label('backchannel_logout_uri'))
  }
  const par = bool('require_pushed_authorization_requests')
  if (par !== undefined) out.requirePushedAuthorizationRequests = par
  return out
}

/** The rules that involve several settings, on a client's complete settings. */
export function checkClientSettings(c: ClientSettings, names: FieldNames): ClientSettings {
  const fail = (field: ClientField, message: string): never => {
    throw new InputError(names.prefix ? `${names.label(field)}: ${message}` : message)
  }
  if (c.isPublic && c.grantTypes.includes('client_credentials')) fail('grant_types', 'a public client cannot use client_credentials')
  if (c.refreshDelivery === 'cookie' && c.allowedOrigins.length === 0) fail('allowed_origins', `cookie delivery needs ${names.label('allowed_origins')} (the browser app origins allowed to refresh)`)
  if (c.grantTypes.includes('authorization_code') && c.redirectUris.length === 0) fail('redirect_uris', `authorization_code needs ${names.label('redirect_uris')}`)
  return c
}

/** A new client's settings: the given ones, the defaults for the rest, checked together. `name` and `grant_types` are required. */
export function resolveNewClient(given: Partial<ClientSettings>, names: FieldNames): ClientSettings {
  if (given.name === undefined) throw new InputError(`${names.label('name')} is required`)
  if (given.grantTypes === undefined) throw new InputError(`${names.label('grant_types')} is required (any of ${GRANT_TYPES.join(', ')})`)
  const isPublic = given.isPublic ?? false
  const allowedOrigins = given.allowedOrigins ?? []
  return checkClientSettings(
    {
      name: given.name,
      isPublic,
      grantTypes: given.grantTypes,
      scopes: given.scopes ?? [],
      audience: given.audience ?? [],
      // A browser app (public, with origins) gets its refresh token in a cookie unless it says otherwise.
      refreshDelivery: given.refreshDelivery ?? (isPublic && allowedOrigins.length > 0 ? 'cookie' : 'body'),
      allowedOrigins,
      idTokenSignedResponseAlg: given.idTokenSignedResponseAlg ?? ID_TOKEN_DEFAULT_ALG,
      rateLimitPerSecond: given.rateLimitPerSecond ?? null,
      redirectUris: given.redirectUris ?? [],
      postLogoutRedirectUris: given.postLogoutRedirectUris ?? [],
      firstParty: given.firstParty ?? false,
      backchannelLogoutUri: given.backchannelLogoutUri ?? null,
      requirePushedAuthorizationRequests: given.requirePushedAuthorizationRequests ?? false,
    },
    names,
  )
}

/** A client's current settings. */
export function settingsOf(c: Client): ClientSettings {
  return {
    name: c.name,
    isPublic: c.isPublic,
    grantTypes: c.grantTypes,
    scopes: c.scopes,
    audience: c.audience,
    refreshDelivery: c.refreshDelivery,
    allowedOrigins: c.allowedOrigins,
    idTokenSignedResponseAlg: c.idTokenSignedResponseAlg,
    rateLimitPerSecond: c.rateLimitPerSecond,
    redirectUris: c.redirectUris,
    postLogoutRedirectUris: c.postLogoutRedirectUris,
    firstParty: c.firstParty,
    backchannelLogoutUri: c.backchannelLogoutUri,
    requirePushedAuthorizationRequests: c.requirePushedAuthorizationRequests,
  }
}

/**
 * A change to a client: its current settings with `patch` over them, checked together. Whether a
 * client is public cannot change (a secret would appear or vanish): register a new client.
 */
export function mergeClientSettings(current: Client, patch: Partial<ClientSettings>, names: FieldNames): ClientSettings {
  if (patch.isPublic !== undefined && patch.isPublic !== current.isPublic) {
    throw new InputError(`${names.label('public')} cannot change (a secret would appear or vanish): register a new client`)
  }
  return checkClientSettings({ ...settingsOf(current), ...patch }, names)
}

/** The fields whose value differs between two settings (for the audit trail). */
export function changedFields(before: ClientSettings, after: ClientSettings): ClientField[] {
  const pairs: [ClientField, unknown, unknown][] = [
    ['name', before.name, after.name],
    ['grant_types', before.grantTypes, after.grantTypes],
    ['scopes', before.scopes, after.scopes],
    ['audience', before.audience, after.audience],
    ['refresh_delivery', before.refreshDelivery, after.refreshDelivery],
    ['allowed_origins', before.allowedOrigins, after.allowedOrigins],
    ['id_token_signed_response_alg', before.idTokenSignedResponseAlg, after.idTokenSignedResponseAlg],
    ['rate_limit_per_second', before.rateLimitPerSecond, after.rateLimitPerSecond],
    ['redirect_uris', before.redirectUris, after.redirectUris],
    ['post_logout_redirect_uris', before.postLogoutRedirectUris, after.postLogoutRedirectUris],
    ['first_party', before.firstParty, after.firstParty],
    ['backchannel_logout_uri', before.backchannelLogoutUri, after.backchannelLogoutUri],
    ['require_pushed_authorization_requests', before.requirePushedAuthorizationRequests, after.requirePushedAuthorizationRequests],
  ]
  return pairs.filter(([, a, b]) => JSON.stringify(a) !== JSON.stringify(b)).map(([f]) => f)
}
