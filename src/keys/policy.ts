import { ID_TOKEN_DEFAULT_ALG, type Config, type SigningAlg } from '../config.js'

/**
 * The timing rules of the signing-key schedule, all in seconds, derived from the configuration
 * (docs/keys.md "Signing keys"):
 * - a new key is published `publishLeadSeconds` before it signs: the JWKS cache ceiling, plus how long
 *   instances take to see a change, plus the clock-skew allowance;
 * - a retired key stays published `retentionSeconds` after it stopped signing: the longest token
 *   lifetime, plus the same cache, propagation and skew allowances.
 */
export interface KeyPolicy {
  /** The access-token line: the algorithm access tokens are signed with (SIGNING_ALG). */
  readonly alg: SigningAlg
  /**
   * The key lines this configuration needs, one per algorithm: the access-token line and RS256,
   * the default ID-token algorithm (OIDC Core §15.1). The schedule also keeps every other line
   * that has an active key in the database (created by `keys rotate --alg`, or an import).
   */
  readonly lines: readonly SigningAlg[]
  /** 0 = no scheduled rotation. */
  readonly rotationIntervalSeconds: number
  readonly publishLeadSeconds: number
  readonly retentionSeconds: number
  /** `Cache-Control: max-age` ceiling of the JWKS. */
  readonly jwksMaxAgeSeconds: number
  readonly skewSeconds: number
}

export function keyPolicy(config: Config): KeyPolicy {
  const propagation = config.cacheRefreshSeconds
  // Access tokens and ID tokens share one lifetime today; take the longest if that changes.
  const longestToken = config.accessTokenTtlSeconds
  return {
    alg: config.signingAlg,
    lines: [...new Set<SigningAlg>([config.signingAlg, ID_TOKEN_DEFAULT_ALG])],
    rotationIntervalSeconds: config.keyRotationIntervalSeconds,
    publishLeadSeconds: config.jwksMaxAgeSeconds + propagation + config.keyClockSkewSeconds,
    retentionSeconds: longestToken + config.jwksMaxAgeSeconds + propagation + config.keyClockSkewSeconds,
    jwksMaxAgeSeconds: config.jwksMaxAgeSeconds,
    skewSeconds: config.keyClockSkewSeconds,
  }
}

/** The schedule-relevant fields of a key row. */
export interface ScheduledKey {
  readonly alg: string
  readonly state: string
  readonly created_at: Date
  readonly activated_at: Date | null
  readonly retired_at: Date | null
  readonly activate_at: Date | null
  readonly remove_at: Date | null
}

const ms = (d: Date | null | undefined) => (d ? d.getTime() : undefined)

/** When a pending key starts signing (a row without a date: publication + lead). */
export function activationTime(key: ScheduledKey, policy: KeyPolicy): number {
  return ms(key.activate_at) ?? key.created_at.getTime() + policy.publishLeadSeconds * 1000
}

/** When a retired key leaves the JWKS (a row without a date: retirement + retention). */
export function removalTime(key: ScheduledKey, policy: KeyPolicy): number {
  return ms(key.remove_at) ?? (ms(key.retired_at) ?? key.created_at.getTime()) + policy.retentionSeconds * 1000
}

/**
 * When the next key (the standby) should be published: right after the active key became active,
 * whenever no key is pending (Infinity when rotation is off, a key is pending, or none is active).
 * So while rotation is on there is almost always a long-published pending key that a revoke or an
 * immediate rotation can promote.
 */
export function publicationTime(keys: readonly ScheduledKey[], policy: KeyPolicy): number {
  if (policy.rotationIntervalSeconds === 0 || keys.some((k) => k.state === 'pending')) return Infinity
  const active = keys.find((k) => k.state === 'active')
  if (!active) return Infinity
  return activeSince(active)
}

/** When a key started signing (an old row without the date: its creation). */
export function activeSince(key: ScheduledKey): number {
  return ms(key.activated_at) ?? key.created_at.getTime()
}

/**
 * When a standby published at `now` starts signing: one interval after the active key started,
 * and never sooner than the publish lead from now (a standby published late, after an outage or
 * an emergency, still reaches every cache before it signs).
 */
export function standbyActivation(active: ScheduledKey, now: number, policy: KeyPolicy): number {
  return Math.max(activeSince(active) + policy.rotationIntervalSeconds * 1000, now + policy.publishLeadSeconds * 1000)
}

/** Whether a pending key has been published for the publish lead: every cache that honours max-age has it. */
export function prepublished(key: Pick<ScheduledKey, 'created_at'>, now: number, policy: KeyPolicy): boolean {
  return now - key.created_at.getTime() >= policy.publishLeadSeconds * 1000
}

/**
 * The published keys grouped by line (algorithm): every configured line (possibly without keys),
 * and every other line that still has a published key. Each line has its own schedule.
 */
export function keyLines<K extends Pick<ScheduledKey, 'alg'>>(keys: readonly K[], policy: KeyPolicy): Map<string, K[]> {
  const lines = new Map<string, K[]>(policy.lines.map((alg) => [alg, []]))
  for (const k of keys) {
    const line = lines.get(k.alg)
    if (line) line.push(k)
    else lines.set(k.alg, [k])
  }
  return lines
}

/**
 * The next scheduled change of one line's published keys, ms; Infinity if none: the next
 * publication, the next removal, and — with rotation on — the activation of the pending key,
 * because the next standby is published right after it (in the same step).
 */
function nextLineChange(keys: readonly ScheduledKey[], policy: KeyPolicy): number {
  let next = publicationTime(keys, policy)
  for (const k of keys) {
    if (k.state === 'retired') next = Math.min(next, removalTime(k, policy))
    if (k.state === 'pending' && policy.rotationIntervalSeconds > 0) next = Math.min(next, activationTime(k, policy))
  }
  return next
}

/** The next scheduled change of the published key set (every line), ms; Infinity if none. */
export function nextKeySetChange(keys: readonly ScheduledKey[], policy: KeyPolicy): number {
  let next = Infinity
  for (const line of keyLines(keys, policy).values()) next = Math.min(next, nextLineChange(line, policy))
  return next
}

/**
 * The next moment the schedule has something to do on any line (also activations); Infinity if
 * never, -Infinity at once (a line has no active key).
 */
export function nextScheduleStep(keys: readonly ScheduledKey[], policy: KeyPolicy): number {
  let next = Infinity
  for (const [alg, line] of keyLines(keys, policy)) {
    if (!line.some((k) => k.state === 'active') && (policy.lines as readonly string[]).includes(alg)) return -Infinity
    next = Math.min(next, nextLineChange(line, policy))
    for (const k of line) if (k.state === 'pending') next = Math.min(next, activationTime(k, policy))
  }
  return next
}

/**
 * `Cache-Control: max-age` of the JWKS at `now`: never beyond the configured ceiling, and never
 * beyond the next scheduled change of the key set minus the skew allowance; never negative.
 */
export function jwksMaxAge(nextChange: number, now: number, policy: KeyPolicy): number {
  if (nextChange === Infinity) return policy.jwksMaxAgeSeconds
  const untilChange = Math.floor((nextChange - now) / 1000) - policy.skewSeconds
  return Math.max(0, Math.min(policy.jwksMaxAgeSeconds, untilChange))
}
