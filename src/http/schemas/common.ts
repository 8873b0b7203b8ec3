// JSON Schemas shared by the routes (TypeBox: one definition gives the validator, the TypeScript
// type and the OpenAPI document). Route-specific schemas live beside their routes or in
// `src/http/schemas/<area>.ts`; `/openapi.json` is generated from them (src/http/openapi.ts).
import { Type, type Static, type TSchema } from '@sinclair/typebox'

/** Every error answer: RFC 6749 §5.2 / RFC 6750 §3 JSON (src/http/error-handler.ts writes it). */
export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'An RFC 6749 / RFC 6750 / OIDC error code (`invalid_request`, `invalid_token`, …).' }),
    error_description: Type.String({ description: 'What went wrong, for a human; never contains a secret.' }),
  },
  { additionalProperties: false, description: 'An error. Always sent with `Cache-Control: no-store`.' },
)
export type ErrorBody = Static<typeof ErrorBody>

/** What each error status means at Tessera (the response description in the OpenAPI document). */
const ERROR_MEANING: Record<number, string> = {
  400: 'Bad request (`invalid_request`, `invalid_grant`, `invalid_scope`, … named in `error`).',
  401: 'Authentication failed (`invalid_client` with `WWW-Authenticate: Basic`, or `invalid_token` with `WWW-Authenticate: Bearer`).',
  403: 'Authenticated, but not allowed (`insufficient_scope`, `access_denied`).',
  404: 'No such resource (`invalid_request`).',
  405: 'Method not allowed (`invalid_request`, with an `Allow` header).',
  409: 'Conflict with the current state (`invalid_request`).',
  412: 'Precondition failed: the `If-Match` version is stale (`invalid_request`).',
  413: 'The request body is too large (`invalid_request`).',
  429: 'Too many requests (`temporarily_unavailable`, with `Retry-After`).',
  500: 'Internal error (`server_error`).',
  503: 'Temporarily unavailable: starting, draining, database down or overloaded (`temporarily_unavailable`, with `Retry-After`).',
}

/** The error responses an operation can give, by status, for a route's `schema.response`. */
export function errorResponses(...statuses: number[]): Record<number, typeof ErrorBody> {
  return Object.fromEntries(statuses.map((s) => [s, { ...ErrorBody, description: ERROR_MEANING[s] ?? ErrorBody.description }])) as Record<number, typeof ErrorBody>
}

/** A response without a body (204, a 303 redirect, RFC 7009's empty 200). */
export const NoBody = (description: string, headers?: Record<string, TSchema>) => ({ type: 'null', description, ...(headers ? { headers } : {}) }) as unknown as TSchema

/** A 303 See Other to `Location`. */
export const Redirect = (description: string) => NoBody(description, { location: Type.String({ description: 'Where the browser goes next.' }) })

/** A response of another media type than JSON (an HTML page, a stylesheet, Prometheus text). */
export const MediaResponse = (mediaType: string, description: string, schema: TSchema = Type.String()) =>
  ({ description, content: { [mediaType]: { schema } } }) as unknown as TSchema

/** A hosted HTML page (login, consent, logout confirmation, a message). */
export const HtmlPage = (description: string) => MediaResponse('text/html', description)

/** The `propagation` member of an admin answer (README "Changes reach every instance"). */
const InstanceRef = Type.Object({ instance: Type.String(), host: Type.String(), pid: Type.Integer(), change_version: Type.Integer() })
export const PropagationReport = Type.Object(
  {
    version: Type.Integer({ description: 'The change version every instance had to reach.' }),
    confirmed: Type.Array(InstanceRef),
    unconfirmed: Type.Array(InstanceRef),
    stale: Type.Array(InstanceRef),
    waited_ms: Type.Integer(),
    error: Type.Optional(Type.String({ description: 'Set when the heartbeats could not be read (the change itself is committed).' })),
  },
  { description: 'How far the change has reached the running instances.' },
)

/** A timestamp as the API writes it (JSON of a Date: ISO 8601, UTC). */
export const Timestamp = (description?: string) => Type.String({ format: 'date-time', ...(description ? { description } : {}) })
export const NullableTimestamp = (description?: string) => Type.Union([Timestamp(description), Type.Null()])
export const NullableString = (description?: string) => Type.Union([Type.String(description ? { description } : {}), Type.Null()])

/** The `{user}` path segment of the admin API: a user id (UUID) or a username. */
export const UserParams = Type.Object({ user: Type.String({ description: 'A user id (UUID) or a username.' }) })

type Security = Array<Record<string, string[]>>

/** Bearer authentication (an access token; the admin API needs a client_credentials token with an admin scope). */
export const BEARER: Security = [{ bearer: [] }]
/** Client authentication at /token, /revoke, /introspect, /par: HTTP Basic, or `client_id`/`client_secret` in the form. */
export const CLIENT_AUTH: Security = [{ client_basic: [] }, {}]

/**
 * Documentation-only request schemas: a route declares `schema.documentOnly: { body, querystring,
 * params, headers }` for request parts that must appear in the OpenAPI document but must NOT be
 * validated by fastify, because the route parses them itself and answers with its own, tested
 * errors (RFC 6749 §5.2 bodies at the OAuth endpoints, the messages of the admin parsers shared
 * with the CLI). Fastify only compiles `body`/`querystring`/`params`/`headers` at the top of
 * `schema`, so it never sees these; the OpenAPI generator (src/http/openapi.ts) moves them into
 * place. Request schemas at the top level stay validated, which is what new routes want.
 */
export interface DocumentOnly {
  body?: TSchema
  querystring?: TSchema
  params?: TSchema
  headers?: TSchema
  /** Cookies the route reads (OpenAPI `in: cookie` parameters). */
  cookies?: TSchema
}

declare module 'fastify' {
  interface FastifySchema {
    /** Request schemas documented in `/openapi.json` and never validated (see `DocumentOnly`). */
    documentOnly?: DocumentOnly
  }
  interface FastifyContextConfig {
    /** Set on the 405 catch-all routes of `methodNotAllowed`: not endpoints, hidden from the document. */
    methodNotAllowed?: boolean
  }
}
