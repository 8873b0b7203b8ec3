// The OpenAPI 3.1 document of Tessera, generated from the routes' own schemas (@fastify/swagger):
// every route declares `schema: { summary, tags, security, params, querystring, body, response }`
// (TypeBox, src/http/schemas/), and `/openapi.json` (openapi.route.ts) serves what this collects.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import swagger from '@fastify/swagger'
import type { FastifyInstance, FastifySchema } from 'fastify'
import type { Config } from '../config.js'
import { ErrorBody } from './schemas/common.js'

/** name, version and description from package.json (found upwards: src/http or dist/src/http). */
function packageInfo(): { name: string; version: string; description: string } {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 4; i++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string; description?: string }
      if (pkg.name === 'tessera' && pkg.version) return { name: pkg.name, version: pkg.version, description: pkg.description ?? '' }
    } catch { /* not here */ }
  }
  return { name: 'tessera', version: 'unknown', description: '' }
}

export const OPENAPI_TAGS = [
  { name: 'oauth', description: 'OAuth 2 endpoints: tokens, revocation, introspection, pushed authorization requests.' },
  { name: 'oidc', description: 'OpenID Connect: discovery, keys, user info.' },
  { name: 'first-party', description: 'Tessera’s first-party password login and the browser refresh cookie.' },
  { name: 'browser', description: 'Browser-facing endpoints: authorization, hosted pages, RP-initiated logout, page assets.' },
  { name: 'operations', description: 'Probes, metrics and this document.' },
  { name: 'admin', description: 'The admin API: needs a client_credentials token with an admin scope (`tessera:admin`).' },
  { name: 'account', description: 'Self-service with the user’s own access token.' },
]

/**
 * Moves the documentation-only request schemas (`schema.documentOnly`, see
 * src/http/schemas/common.ts) to where the document expects them. Fastify never validates them.
 */
export function documentedSchema(schema: FastifySchema | undefined): FastifySchema | undefined {
  if (!schema?.documentOnly) return schema
  const { documentOnly, ...rest } = schema
  return { ...rest, ...documentOnly }
}

/**
 * Registers the generator; call before any route is registered (it collects them with an
 * `onRoute` hook). Response schemas document and never filter: the serialiser stays
 * `JSON.stringify` (fast-json-stringify would drop undeclared properties and coerce types), so
 * adding or changing a response schema can never change an answer.
 */
export async function registerOpenApi(app: FastifyInstance, config: Config): Promise<void> {
  app.setSerializerCompiler(() => (data) => JSON.stringify(data))
  const pkg = packageInfo()
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: pkg.name,
        version: pkg.version,
        description: `${pkg.description}. Every error is JSON \`{"error", "error_description"}\` with \`Cache-Control: no-store\`; any method a path does not list answers 405 with an \`Allow\` header, and an unknown path 404, with that body.`,
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      servers: [{ url: config.issuer }],
      tags: OPENAPI_TAGS,
      components: {
        // The body of every error, also of those no operation lists (405 for another method, 404 for an unknown path).
        schemas: { Error: JSON.parse(JSON.stringify(ErrorBody)) },
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token issued by this server (`Authorization: Bearer …`).' },
          client_basic: { type: 'http', scheme: 'basic', description: 'Client authentication (RFC 6749 §2.3.1): client id and secret, form-urlencoded, as HTTP Basic. Alternatively `client_id`/`client_secret` in the form body.' },
        },
      },
    },
    // HEAD routes fastify adds for every GET are not listed (they are the GET without a body).
    exposeHeadRoutes: false,
    transform: ({ schema, url, route }) => ({
      url,
      // The 405 catch-alls are not endpoints (the description says how every other method answers).
      schema: route.config?.methodNotAllowed ? { ...schema, hide: true } : (documentedSchema(schema) as typeof schema),
    }),
  })
}

/** The document as served: its JSON, once, and a strong ETag of it. */
export function openApiDocument(app: FastifyInstance): { body: string; etag: string } {
  const body = JSON.stringify(app.swagger())
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"` }
}
