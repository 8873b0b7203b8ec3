// JSON Schemas shared by the routes (TypeBox: one definition gives the validator, the TypeScript
// type and the OpenAPI document). Route-specific schemas live beside their routes.
import { Type, type Static } from '@sinclair/typebox'

/** Every error answer: RFC 6749 §5.2 / RFC 6750 §3 JSON (src/http/error-handler.ts writes it). */
export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'An RFC 6749 / RFC 6750 / OIDC error code (`invalid_request`, `invalid_token`, …).' }),
    error_description: Type.String({ description: 'What went wrong, for a human; never contains a secret.' }),
  },
  { additionalProperties: false, description: 'An error. Always sent with `Cache-Control: no-store`.' },
)
export type ErrorBody = Static<typeof ErrorBody>

/** The error responses an operation can give, by status, for a route's `schema.response`. */
export function errorResponses(...statuses: number[]): Record<number, typeof ErrorBody> {
  return Object.fromEntries(statuses.map((s) => [s, ErrorBody]))
}
