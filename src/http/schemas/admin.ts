// Schemas of the admin API (sessions, audit, keys, SSO sessions and consents, login throttle).
// Their query, path and body schemas are documentation only (`schema.documentOnly`): these routes
// parse their input with the parsers they share with the CLI (src/sessions/params.ts, …), whose
// messages are part of the tested behaviour.
import { Type } from '@sinclair/typebox'
import { NullableString, NullableTimestamp, PropagationReport, Timestamp } from './common.js'

const opt = (description: string) => Type.Optional(Type.String({ description }))

export const SessionState = Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')])

/** A refresh-token family (one login on one device). */
export const Session = Type.Object({
  id: Type.String({ format: 'uuid', description: 'The family id (the `sid` of its access tokens).' }),
  client_id: Type.String(),
  client_name: Type.String(),
  created_at: Timestamp(),
  auth_time: Timestamp(),
  expires_at: Timestamp(),
  last_used_at: NullableTimestamp(),
  last_ip: NullableString(),
  last_user_agent: NullableString(),
  scope: Type.String(),
  state: SessionState,
  revoked_at: NullableTimestamp(),
  revoked_reason: NullableString(),
})

export const UserSummary = Type.Object({ id: Type.String({ format: 'uuid' }), username: Type.String() })

export const SessionsQuery = Type.Object({
  include: Type.Optional(Type.Literal('all', { description: '`all` lists revoked and expired sessions too.' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Page size (default 100).' })),
  cursor: opt('The `next_cursor` of the previous page.'),
})

export const SessionsPage = Type.Object({
  user: UserSummary,
  sessions: Type.Array(Session),
  next_cursor: NullableString('Set when there is another page.'),
})

export const FamilyParams = Type.Object({ familyId: Type.String({ format: 'uuid', description: 'A session (refresh-token family) id.' }) })

export const AuditQuery = Type.Object({
  type: opt('An event type (`login.failed`), or a prefix ending in a dot (`refresh_token.`).'),
  user: opt('A user id (UUID) or username.'),
  family: opt('A session (family) id.'),
  client: opt('A client id.'),
  since: opt('ISO 8601 date or date-time with a time zone (inclusive).'),
  until: opt('ISO 8601 date or date-time with a time zone (exclusive).'),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Page size (default 100).' })),
  cursor: opt('The `next_cursor` of the previous page.'),
})

export const AuditEvent = Type.Object({
  id: Type.String({ description: 'Increasing with insertion.' }),
  at: Timestamp(),
  type: Type.String(),
  client_id: NullableString(),
  user_id: NullableString(),
  family_id: NullableString(),
  ip: NullableString(),
  user_agent: NullableString(),
  detail: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()]),
})

export const AuditPage = Type.Object({ events: Type.Array(AuditEvent), next_cursor: NullableString('Set when there is another page.') })

export const KeyInfo = Type.Object({
  kid: Type.String(),
  alg: Type.String(),
  state: Type.String({ description: '`pending`, `active`, `retired`, `removed` or `revoked`.' }),
  created_at: Timestamp(),
  activate_at: NullableTimestamp(),
  activated_at: NullableTimestamp(),
  retired_at: NullableTimestamp(),
  remove_at: NullableTimestamp(),
  removed_at: NullableTimestamp(),
  revoked_at: NullableTimestamp(),
  revoked_reason: NullableString(),
  kek_id: NullableString(),
})

export const KeyList = Type.Object({ keys: Type.Array(KeyInfo) })

const SigningAlg = Type.String({ description: 'A signing algorithm (`RS256`, `ES256`, `EdDSA`, …); the SIGNING_ALG line when left out.' })

export const RotateRequest = Type.Object({
  alg: Type.Optional(SigningAlg),
  immediate: Type.Optional(Type.Boolean({ description: 'Activate the new key now (retiring the active one) instead of scheduling it.' })),
})

export const RotateResponse = Type.Object({
  kid: Type.String(),
  alg: Type.String(),
  state: Type.String(),
  activate_at: Type.Optional(Timestamp()),
  created: Type.Optional(Type.Boolean()),
  retired: Type.Optional(Type.Array(Type.String())),
  prepublished: Type.Optional(Type.Boolean()),
  propagation: PropagationReport,
})

export const KidParams = Type.Object({ kid: Type.String({ description: 'A key id.' }) })
export const AlgParams = Type.Object({ alg: SigningAlg })

export const RevokeKeyRequest = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 200, description: 'Recorded with the revocation.' })) })

export const RevokeKeyResponse = Type.Object({
  kid: Type.String(),
  alg: NullableString(),
  state: Type.Literal('revoked'),
  already_revoked: Type.Boolean(),
  successor: NullableString('The key that signs instead.'),
  successor_prepublished: Type.Union([Type.Boolean(), Type.Null()]),
  propagation: PropagationReport,
})

export const ImportKeyRequest = Type.Object({
  pem: Type.Optional(Type.String({ description: 'A PKCS#8 private key (send exactly one of `pem` and `jwk`).' })),
  jwk: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'A private JWK.' })),
  alg: Type.Optional(SigningAlg),
  state: Type.Optional(Type.String({ description: '`active` or `pending` (the default).' })),
})

export const ImportKeyResponse = Type.Object({ kid: Type.String(), alg: Type.String(), state: Type.String(), retired: Type.Array(Type.String()), propagation: PropagationReport })

export const RetireLineResponse = Type.Object({ alg: Type.String(), retired: Type.Array(Type.String()), withdrawn: Type.Array(Type.String()), propagation: PropagationReport })

export const RewrapResponse = Type.Object({
  kek_id: Type.String(),
  rewrapped: Type.Array(Type.String()),
  unchanged: Type.Integer(),
  failed: Type.Array(Type.String()),
  propagation: PropagationReport,
})

export const SsoSession = Type.Object({
  id: Type.String({ format: 'uuid', description: 'The session id (the OIDC `sid`).' }),
  auth_time: Timestamp(),
  created_at: Timestamp(),
  last_seen_at: Timestamp(),
  idle_expires_at: Timestamp(),
  expires_at: Timestamp(),
  ip: NullableString(),
  user_agent: NullableString(),
  revoked_at: NullableTimestamp(),
  revoked_reason: NullableString(),
  state: SessionState,
})

export const SsoSessionsPage = Type.Object({ user: UserSummary, sso_sessions: Type.Array(SsoSession) })
export const SsoParams = Type.Object({ id: Type.String({ format: 'uuid', description: 'An SSO session id.' }) })

export const Consent = Type.Object({ client_id: Type.String(), scopes: Type.Array(Type.String()), granted_at: Timestamp() })
export const ConsentsPage = Type.Object({ user: UserSummary, consents: Type.Array(Consent) })
export const ConsentsQuery = Type.Object({ client: opt('Only this client’s consent (all clients when left out).') })

export const ThrottleQuery = Type.Object({
  account: opt('A username (send exactly one of `account` and `address`).'),
  address: opt('An IP address.'),
})

export const ThrottleCounter = Type.Object({
  kind: Type.String({ description: '`account`, `address` or `address_account`.' }),
  account: Type.Optional(Type.String()),
  address: Type.Optional(Type.String()),
  failures: Type.Integer(),
  last_failure_at: Timestamp(),
  locked: Type.Boolean(),
  blocked_until: NullableTimestamp(),
  retry_after: Type.Integer({ description: 'Seconds until unlocked (0 when not locked).' }),
})

export const ThrottleState = Type.Object({
  account: Type.Optional(Type.String()),
  address: Type.Optional(Type.String()),
  locked: Type.Boolean(),
  counters: Type.Array(ThrottleCounter),
})

export const ThrottleCleared = Type.Object({ account: Type.Optional(Type.String()), address: Type.Optional(Type.String()), cleared: Type.Integer() })
