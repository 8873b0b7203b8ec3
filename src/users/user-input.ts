// Validation of user input shared by the admin API (which answers 400 invalid_request naming the
// field) and the CLI (exit code 2): the username rule, roles and profile attributes. Pure: no I/O.
// A bad value throws InputError with a message that names the field as the caller calls it.
import { InputError } from '../errors.js'
import { UUID } from '../tokens/access-token.js'
import { normalizeUsername, type UserProfile } from './user.js'

export const MAX_USERNAME_LENGTH = 256
/** What a username may contain once normalised: letters, digits and . _ @ + - */
const USERNAME = /^[\p{L}\p{N}._@+-]+$/u
export const USERNAME_RULE = 'letters, digits and . _ @ + - (at most 256 characters, compared after Unicode NFKC and lower-casing)'
const ROLE = /^[\x21-\x2B\x2D-\x7E]{1,64}$/
export const MAX_ROLES = 64
const MAX_NAME_LENGTH = 256
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/

/** A username under the one rule (`normalizeUsername`): the normalised form, or InputError. */
export function parseUsername(value: string, name = 'username'): string {
  if (value.length > 4 * MAX_USERNAME_LENGTH) throw new InputError(`${name} may contain ${USERNAME_RULE}`)
  const n = normalizeUsername(value)
  if (n.length === 0 || [...n].length > MAX_USERNAME_LENGTH || !USERNAME.test(n)) throw new InputError(`${name} may contain ${USERNAME_RULE}`)
  // A user is named by id or by username in the same path segment: a UUID-shaped name could never be reached.
  if (UUID.test(n)) throw new InputError(`${name} must not have the form of a UUID (user ids have it)`)
  return n
}

/** Roles: printable ASCII words without spaces or commas, at most 64 of 64 characters; duplicates dropped. */
export function parseRoles(values: readonly string[], name = 'roles'): string[] {
  if (values.length > MAX_ROLES) throw new InputError(`${name} must have at most ${MAX_ROLES} entries`)
  for (const r of values) if (!ROLE.test(r)) throw new InputError(`${name} must be words of printable ASCII without spaces or commas (1–64 characters each)`)
  return [...new Set(values)]
}

/** A display name: up to 256 printable characters; '' or null clears it. */
export function parseName(value: string | null, name = 'name'): string | null {
  if (value === null || value === '') return null
  if ([...value].length > MAX_NAME_LENGTH || /[\x00-\x1f\x7f]/.test(value)) throw new InputError(`${name} must be at most ${MAX_NAME_LENGTH} printable characters`)
  return value
}

/** An e-mail address (local@domain, no spaces); '' or null clears it. */
export function parseEmail(value: string | null, name = 'email'): string | null {
  if (value === null || value === '') return null
  if (!EMAIL.test(value)) throw new InputError(`${name} must be an e-mail address`)
  return value
}

/** Profile attributes as given (undefined: unchanged; null or '': cleared), each validated. */
export function parseProfile(input: { name?: string | null | undefined; email?: string | null | undefined; emailVerified?: boolean | null | undefined }, names: { name: string; email: string; emailVerified: string } = { name: 'name', email: 'email', emailVerified: 'email_verified' }): Partial<UserProfile> {
  const p: Partial<UserProfile> = {}
  if (input.name !== undefined) p.name = parseName(input.name, names.name)
  if (input.email !== undefined) p.email = parseEmail(input.email, names.email)
  // Cleared (null) means not verified.
  if (input.emailVerified !== undefined) p.emailVerified = input.emailVerified ?? false
  return p
}
