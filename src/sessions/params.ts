// Validation of the parameters of the sessions and audit queries, shared by the admin API
// (which answers 400 invalid_request) and the CLI (exit code 2). Pure: no I/O.
// A malformed value throws InputError, which the API answers 400 and the CLI exits 2 with.
import { AUDIT_MAX_LIMIT, type AuditFilter } from '../audit/audit.store.js'
import { InputError } from '../errors.js'
import { UUID } from '../tokens/access-token.js'
import { normalizeUsername } from '../users/user.js'

/** A UUID in any letter case (people paste them upper-cased); stored ones are lower case. */
const isUuid = (value: string) => UUID.test(value.toLowerCase())
// The same alphabet `tessera users create` allows.
const USERNAME = /^[\p{L}\p{N}._@+-]{1,256}$/u
// RFC 3339 / ISO 8601: a date (midnight UTC), or a date and time with Z or an offset.
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/
const EVENT_TYPE = /^[a-z][a-z_]*(?:\.[a-z][a-z_]*)*\.?$/
const CLIENT_ID = /^[\x21-\x7E]{1,256}$/
const INT8_MAX = 9223372036854775807n

/** A family (session) id: a UUID, lower-cased. */
export function parseUuid(value: string, name: string): string {
  if (!isUuid(value)) throw new InputError(`${name} must be a UUID`)
  return value.toLowerCase()
}

/** A user named by id (a UUID) or by username; a UUID-shaped value is always an id. */
export type UserRef = { id: string } | { username: string }

export function parseUserRef(value: string, name = 'user'): UserRef {
  if (isUuid(value)) return { id: value.toLowerCase() }
  // Checked as stored (Unicode NFKC, lower case): any name `users create` accepted can be named here.
  if (value.length > 1024 || !USERNAME.test(normalizeUsername(value))) throw new InputError(`${name} must be a user id (UUID) or a username`)
  return { username: value }
}

/** An instant in ISO 8601 with a time zone (or a bare date, meaning midnight UTC). */
export function parseInstant(value: string, name: string): Date {
  const m = ISO.exec(value)
  const bad = () => new InputError(`${name} must be an ISO 8601 date or date-time with a time zone, e.g. 2026-11-23T10:00:00Z`)
  if (!m) throw bad()
  const [y, mo, d, hour, minute, second] = m.slice(1, 7).map((x) => Number(x ?? 0)) as [number, number, number, number, number, number]
  // Date.parse would roll 2026-02-30 over to March; refuse impossible dates instead.
  const daysInMonth = new Date(Date.UTC(y, mo, 0)).getUTCDate()
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth || hour > 23 || minute > 59 || second > 59) throw bad()
  const offset = m[7]
  if (offset !== undefined && offset !== 'Z' && (Number(offset.slice(1, 3)) > 23 || Number(offset.slice(4, 6)) > 59)) throw bad()
  const ms = Date.parse(m[4] === undefined ? `${value}T00:00:00Z` : value)
  if (!Number.isFinite(ms)) throw bad()
  return new Date(ms)
}

/** A page size from 1 to `max`. */
export function parseLimit(value: string, max: number = AUDIT_MAX_LIMIT, name = 'limit'): number {
  if (!/^\d{1,7}$/.test(value) || Number(value) < 1 || Number(value) > max) throw new InputError(`${name} must be an integer from 1 to ${max}`)
  return Number(value)
}

/** An audit cursor: the id of the last event of the previous page. */
export function parseAuditCursor(value: string, name = 'cursor'): string {
  if (!/^[1-9]\d{0,18}$/.test(value) || BigInt(value) > INT8_MAX) throw new InputError(`${name} must be the next_cursor of a previous page`)
  return value
}

/** An audit event type, or a prefix of types ending in a dot (`refresh_token.`). */
export function parseEventType(value: string, name = 'type'): string {
  if (value.length > 128 || !EVENT_TYPE.test(value)) throw new InputError(`${name} must be an event type such as refresh_token.revoked, or a prefix ending in a dot such as refresh_token.`)
  return value
}

/** A client id: printable ASCII without spaces. */
export function parseClientId(value: string, name = 'client'): string {
  if (!CLIENT_ID.test(value)) throw new InputError(`${name} must be a client id`)
  return value
}

/** A sessions cursor: opaque to callers (`next_cursor` of the previous page). */
export function parseSessionCursor(value: string, name = 'cursor'): { createdAt: string; id: string } {
  // Node's base64url decoder skips characters outside the alphabet; the pattern below decides.
  const decoded = Buffer.from(value, 'base64url').toString('utf8')
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)\|([0-9a-f-]{36})$/.exec(decoded)
  // Date.parse rolls impossible dates over (Feb 31 → Mar 3): the instant must print back as given.
  const ms = m ? Date.parse(m[1]!) : NaN
  const roundTrips = Number.isFinite(ms) && new Date(ms).toISOString().slice(0, 19) === m![1]!.slice(0, 19)
  if (value.length > 128 || !m || !isUuid(m[2]!) || !roundTrips) throw new InputError(`${name} must be the next_cursor of a previous page`)
  return { createdAt: m[1]!, id: m[2]! }
}

/** Encodes a sessions cursor (microsecond timestamp and id, so no row is skipped or repeated). */
export function sessionCursor(createdAt: string, id: string): string {
  return Buffer.from(`${createdAt}|${id}`, 'utf8').toString('base64url')
}

/** The filter parameters of an audit query, by name. */
export type AuditQuery = Partial<Record<'type' | 'family' | 'client' | 'since' | 'until' | 'limit' | 'cursor', string>>

/**
 * The audit filter of a query (admin API `?type=…`, CLI `--type …`): each parameter parsed as
 * above, named in errors by `nameOf(parameter)`. The user filter needs a lookup and is the caller's.
 */
export function parseAuditFilter(q: AuditQuery, nameOf: (parameter: keyof AuditQuery) => string): AuditFilter {
  return {
    type: q.type === undefined ? undefined : parseEventType(q.type, nameOf('type')),
    familyId: q.family === undefined ? undefined : parseUuid(q.family, nameOf('family')),
    clientId: q.client === undefined ? undefined : parseClientId(q.client, nameOf('client')),
    since: q.since === undefined ? undefined : parseInstant(q.since, nameOf('since')),
    until: q.until === undefined ? undefined : parseInstant(q.until, nameOf('until')),
    limit: q.limit === undefined ? undefined : parseLimit(q.limit, undefined, nameOf('limit')),
    cursor: q.cursor === undefined ? undefined : parseAuditCursor(q.cursor, nameOf('cursor')),
  }
}
