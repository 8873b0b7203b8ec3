import type { FastifyInstance } from 'fastify'
import { GRANT_TYPES } from '../grants/grant-types.js'
import type { JwksDocument } from '../keys/jwks.js'
import type { Services } from '../services.js'
import { methodNotAllowed } from './not-allowed.js'
import { Type } from '@sinclair/typebox'
import { errorResponses, NoBody } from './schemas/common.js'

const Url = Type.String({ format: 'uri' })
const Strings = Type.Array(Type.String())
/** OIDC Discovery §3 / RFC 8414 §2 metadata (the members Tessera sends; clients must ignore others). */
const DiscoveryDocument = Type.Object(
  {
    issuer: Url,
    token_endpoint: Url,
    jwks_uri: Url,
    userinfo_endpoint: Url,
    revocation_endpoint: Url,
    introspection_endpoint: Url,
    authorization_endpoint: Url,
    pushed_authorization_request_endpoint: Url,
    end_session_endpoint: Url,
    grant_types_supported: Strings,
    response_types_supported: Strings,
    response_modes_supported: Strings,
    code_challenge_methods_supported: Strings,
    token_endpoint_auth_methods_supported: Strings,
    scopes_supported: Strings,
    subject_types_supported: Strings,
    id_token_signing_alg_values_supported: Strings,
    claims_supported: Strings,
    login_endpoint: Type.Optional(Url),
    refresh_endpoint: Type.Optional(Url),
    logout_endpoint: Type.Optional(Url),
  },
  { description: 'The metadata (`Cache-Control: public, max-age=300`, CORS open).' },
)
/** RFC 7517 §5: public keys only. */
const Jwks = Type.Object(
  { keys: Type.Array(Type.Object({ kty: Type.String(), kid: Type.String(), alg: Type.String(), use: Type.Optional(Type.String()) })) },
  { description: 'The public signing keys (`application/jwk-set+json`), with a strong `ETag`; `max-age` never outlives the next key-set change.' },
)

/** The discovery document (OIDC Discovery §3, RFC 8414 §2); the issuer is exact, no trailing slash. */
export function discoveryDocument(s: Services) {
  const iss = s.config.issuer
  return {
    issuer: iss,
    token_endpoint: `${iss}/token`,
    jwks_uri: `${iss}/.well-known/jwks.json`,
    userinfo_endpoint: `${iss}/userinfo`,
    revocation_endpoint: `${iss}/revoke`,
    introspection_endpoint: `${iss}/introspect`,
    grant_types_supported: [...GRANT_TYPES],
    // --- authorization-code flow (issue 13)
    authorization_endpoint: `${iss}/authorize`,
    pushed_authorization_request_endpoint: `${iss}/par`,
    require_pushed_authorization_requests: false,
    end_session_endpoint: `${iss}/session/end`,
    response_types_supported: ['code'],
    response_modes_supported: ['query', 'form_post'],
    code_challenge_methods_supported: ['S256'],
    authorization_response_iss_parameter_supported: true,
    prompt_values_supported: ['none', 'login', 'consent'],
    backchannel_logout_supported: true,
    backchannel_logout_session_supported: true,
    frontchannel_logout_supported: false,
    request_parameter_supported: false,
    request_uri_parameter_supported: false,
    claims_parameter_supported: false,
    // ---
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    scopes_supported: ['openid', 'profile', 'email'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: s.keyring.algorithms(),
    claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'azp', 'sid', 'at_hash', 'preferred_username', 'name', 'email', 'email_verified', 'roles'],
    // Tessera-specific first-party endpoints.
    login_endpoint: `${iss}/login`,
    refresh_endpoint: `${iss}/refresh`,
    logout_endpoint: `${iss}/logout`,
  }
}

/** RFC 9110 §13.1.2: If-None-Match uses weak comparison; we only ever send our strong tag. */
function ifNoneMatch(header: string, etag: string): boolean {
  if (header === etag) return true
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag || t.trim() === '*')
}

/** Discovery, RFC 8414 metadata and the JWKS; public, cacheable, CORS open. */
export function wellKnownRoute(app: FastifyInstance, s: Services): void {
  let jwksHeaders: { doc: JwksDocument | undefined; maxAge: number; headers: Record<string, string> } = { doc: undefined, maxAge: -1, headers: {} }
  const discovery = async (_req: unknown, reply: import('fastify').FastifyReply) =>
    reply.header('access-control-allow-origin', '*').header('cache-control', 'public, max-age=300').send(discoveryDocument(s))
  const discoverySchema = (summary: string) => ({ summary, tags: ['oidc'], response: { 200: DiscoveryDocument, ...errorResponses(503) } })
  app.get('/.well-known/openid-configuration', { schema: discoverySchema('OpenID Provider metadata (OIDC Discovery §4)') }, discovery)
  app.get('/.well-known/oauth-authorization-server', { schema: discoverySchema('Authorization server metadata (RFC 8414)') }, discovery)

  // The JWKS cache contract (README "Signing keys"): max-age never outlives the next scheduled
  // change of the key set nor the configured ceiling; a strong ETag of the body, which is
  // serialised once per key-set change; 304 on If-None-Match.
  app.get('/.well-known/jwks.json', {
    schema: {
      summary: 'The JSON Web Key Set (public signing keys)',
      tags: ['oidc'],
      documentOnly: { headers: Type.Object({ 'if-none-match': Type.Optional(Type.String({ description: 'An earlier `ETag`: 304 when unchanged.' })) }) },
      response: {
        200: { description: Jwks.description, content: { 'application/jwk-set+json': { schema: Jwks } } },
        304: NoBody('Not modified.'),
        ...errorResponses(503),
      },
    },
  }, (req, reply) => {
    // The hottest public route: the body and its ETag are serialised once per key-set change
    // (Keyring), the headers once per document and max-age, and the common revalidation (the
    // very tag we sent) is one string comparison.
    const doc = s.keyring.jwksDocument()
    const maxAge = s.keyring.jwksMaxAge()
    if (jwksHeaders.doc !== doc || jwksHeaders.maxAge !== maxAge) {
      jwksHeaders = {
        doc,
        maxAge,
        headers: {
          'access-control-allow-origin': '*',
          'access-control-expose-headers': 'ETag',
          'cache-control': `public, max-age=${maxAge}`,
          etag: doc.etag,
          'content-type': 'application/jwk-set+json; charset=utf-8',
        },
      }
    }
    reply.headers(jwksHeaders.headers)
    const inm = req.headers['if-none-match']
    // A synchronous handler that sends, and returns nothing: no promise per request.
    if (inm !== undefined && ifNoneMatch(inm, doc.etag)) reply.code(304).send()
    else reply.send(doc.body)
  })
  // A browser that revalidates by hand (If-None-Match) sends a preflight first.
  app.options('/.well-known/jwks.json', {
    schema: { summary: 'CORS preflight of the JWKS (for revalidation with If-None-Match)', tags: ['oidc'], response: { 204: NoBody('Allowed from any origin.') } },
  }, async (_req, reply) =>
    reply
      .code(204)
      .header('access-control-allow-origin', '*')
      .header('access-control-allow-methods', 'GET')
      .header('access-control-allow-headers', 'if-none-match')
      .header('access-control-max-age', '86400')
      .send(),
  )
  for (const url of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/.well-known/jwks.json']) methodNotAllowed(app, url, ['GET'])
}
