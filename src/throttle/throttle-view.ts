import { isIP } from 'node:net'
import { InputError } from '../errors.js'
import { normalizeUsername } from '../users/user.js'
import { addressKey } from './address.js'
import type { ThrottleState, ThrottleTarget } from './login-throttle.store.js'

/**
 * The account or address an operator names (CLI and admin API alike): exactly one of a username
 * (any string: counters exist for usernames that do not) or an IP address (IPv6: its /64 is
 * meant; `2001:db8::/64` is accepted too).
 */
export function parseThrottleTarget(input: { account?: string | undefined; address?: string | undefined }, names = { account: 'account', address: 'address' }): ThrottleTarget {
  if ((input.account === undefined) === (input.address === undefined)) throw new InputError(`name exactly one of ${names.account} and ${names.address}`)
  if (input.account !== undefined) {
    if (input.account.length > 256) throw new InputError(`${names.account} must be at most 256 characters`)
    return { account: normalizeUsername(input.account).replace(/\0/g, '\uFFFD') }
  }
  const raw = input.address!.replace(/\/64$/, '')
  if (!isIP(raw)) throw new InputError(`${names.address} must be an IPv4 or IPv6 address`)
  return { address: addressKey(raw) }
}

/** A counter as the CLI and the admin API show it (snake_case, ISO times, seconds left). */
export function throttleView(row: ThrottleState, nowMs: number) {
  const blocked = row.blockedUntil !== null && row.blockedUntil.getTime() > nowMs
  const [address, account] = row.kind === 'address_account' ? [row.subject.slice(0, row.subject.indexOf('|')), row.subject.slice(row.subject.indexOf('|') + 1)] : row.kind === 'address' ? [row.subject, undefined] : [undefined, row.subject]
  return {
    kind: row.kind,
    ...(account !== undefined ? { account } : {}),
    ...(address !== undefined ? { address } : {}),
    failures: row.failures,
    last_failure_at: row.lastFailureAt.toISOString(),
    locked: blocked,
    blocked_until: blocked ? row.blockedUntil!.toISOString() : null,
    retry_after: blocked ? Math.ceil((row.blockedUntil!.getTime() - nowMs) / 1000) : 0,
  }
}
