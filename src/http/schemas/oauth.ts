// Schemas of the OAuth 2 / OIDC endpoints. Their request schemas are documentation only
// (`schema.documentOnly`): these endpoints parse their form bodies themselves and answer RFC 6749
// §5.2 errors (a repeated parameter, a query string, the wrong content type), which fastify's
// validation would replace with its own.
import { Type, type TSchema } from '@sinclair/typebox'
import { GRANT_TYPES } from '../../grants/grant-types.js'

const s = (description: string) => Type.String({ description })
const opt = (description: string) => Type.Optional(s(description))

/** Client authentication in the form (RFC 6749 §2.3.1), when not sent as HTTP Basic. */
const clientFields = {
  client_id: opt('The client id: for a public client, or with `client_secret` (client_secret_post). With HTTP Basic it may be repeated here, equal.'),
  client_secret: opt('The client secret (client_secret_post); never together with HTTP Basic.'),
}

const grant = (name: string, description: string, fields: Record<string, TSchema>) =>
  Type.Object({ grant_type: Type.Literal(name), ...fields, ...clientFields }, { title: name, description })

/** POST /token, one shape per grant (RFC 6749 §4, OIDC Core §3.1.3). */
export const TokenRequest = Type.Union(
  [
    grant('client_credentials', 'RFC 6749 §4.4: the client acting for itself (admin tokens come from here).', { scope: opt('Space-separated scopes, a subset of the client’s.') }),
    grant('refresh_token', 'RFC 6749 §6: rotates the refresh token (the old one stops working, with a short grace for retries).', {
      refresh_token: s('The refresh token.'),
      scope: opt('A subset of the original scope.'),
    }),
    grant('password', 'RFC 6749 §4.3, first-party clients only; throttled like every password check.', {
      username: s('The username.'),
      password: s('The password.'),
      scope: opt('Space-separated scopes.'),
    }),
    grant('authorization_code', 'RFC 6749 §4.1.3 with PKCE (RFC 7636, S256).', {
      code: s('The code from the authorization response.'),
      redirect_uri: s('The redirect URI of the authorization request.'),
      code_verifier: s('The PKCE verifier of the `code_challenge`.'),
    }),
  ],
  { description: `\`grant_type\` is one of ${GRANT_TYPES.join(', ')}.` },
)

/** RFC 6749 §5.1 (a refresh token in the body for API and native clients; browser clients get it as an HttpOnly cookie). */
export const TokenResponse = Type.Object(
  {
    access_token: s('A JWT access token.'),
    token_type: Type.Literal('Bearer'),
    expires_in: Type.Integer({ description: 'Lifetime of the access token, in seconds.' }),
    scope: s('The granted scopes, space-separated.'),
    id_token: opt('An OpenID Connect ID token (with the `openid` scope).'),
    refresh_token: opt('The refresh token, for clients whose refresh delivery is the body (never for cookie clients).'),
  },
  { description: 'Tokens (`Cache-Control: no-store`). A cookie client gets its refresh token as an HttpOnly `Set-Cookie` instead.' },
)

/** POST /login: JSON or form. Validated (the route has always validated it). */
export const LoginRequest = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 256 }),
  password: Type.String({ maxLength: 4096 }),
  client_id: Type.String({ minLength: 1, maxLength: 128 }),
  client_secret: Type.Optional(Type.String({ maxLength: 512 })),
  scope: Type.Optional(Type.String({ maxLength: 2048 })),
})

export const RevokeRequest = Type.Object({
  token: s('An access or refresh token of the calling client.'),
  token_type_hint: Type.Optional(Type.Union([Type.Literal('access_token'), Type.Literal('refresh_token')], { description: 'A hint only.' })),
  ...clientFields,
})

export const IntrospectRequest = Type.Object({
  token: s('The token to inspect.'),
  token_type_hint: Type.Optional(Type.String({ description: '`access_token` or `refresh_token`; a hint only.' })),
  ...clientFields,
})

/** RFC 7662 §2.2: inactive is `{"active": false}` and nothing more. */
export const IntrospectResponse = Type.Union(
  [
    Type.Object({ active: Type.Literal(false) }, { additionalProperties: false, title: 'inactive' }),
    Type.Object(
      {
        active: Type.Literal(true),
        token_type: Type.Union([Type.Literal('Bearer'), Type.Literal('refresh_token')]),
        scope: Type.Optional(Type.String()),
        client_id: Type.String(),
        sub: Type.String(),
        aud: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
        iss: Type.Optional(Type.String()),
        exp: Type.Integer(),
        iat: Type.Integer(),
        jti: Type.Optional(Type.String()),
        sid: Type.Optional(Type.String()),
        roles: Type.Optional(Type.Array(Type.String())),
      },
      { title: 'active' },
    ),
  ],
  { description: 'The token’s state (`Cache-Control: no-store`).' },
)

export const UserinfoResponse = Type.Object(
  {
    sub: s('The user id.'),
    preferred_username: Type.String(),
    name: Type.Optional(Type.String({ description: 'With the `profile` scope.' })),
    email: Type.Optional(Type.String({ description: 'With the `email` scope.' })),
    email_verified: Type.Optional(Type.Boolean({ description: 'With the `email` scope.' })),
    roles: Type.Optional(Type.Array(Type.String())),
  },
  { description: 'Claims of the token’s user (OIDC Core §5.3; `Cache-Control: no-store`).' },
)

/** The parameters of an authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1, RFC 7636, RFC 9126). */
export const AuthorizeParams = Type.Object({
  client_id: s('The client.'),
  response_type: Type.Optional(Type.Literal('code')),
  redirect_uri: Type.Optional(s('A registered redirect URI (may be left out when the client has exactly one).')),
  scope: opt('Space-separated scopes (`openid` for an ID token).'),
  state: opt('Returned unchanged to the client (at most 4096 characters).'),
  code_challenge: Type.Optional(s('PKCE challenge (RFC 7636), required.')),
  code_challenge_method: Type.Optional(Type.Literal('S256')),
  response_mode: Type.Optional(Type.Union([Type.Literal('query'), Type.Literal('form_post')])),
  nonce: opt('Copied into the ID token.'),
  prompt: opt('`none`, `login` or `consent`.'),
  max_age: opt('Maximum authentication age, in seconds.'),
  login_hint: opt('Prefills the username.'),
  request_uri: opt('The `request_uri` of a pushed request (`/par`); then only `client_id` is read besides it.'),
})

export const ParRequest = Type.Object({ ...Type.Omit(AuthorizeParams, ['request_uri']).properties, ...clientFields })

export const ParResponse = Type.Object({
  request_uri: s('Use it once at /authorize with the client_id.'),
  expires_in: Type.Integer({ description: 'Seconds the request_uri stays valid.' }),
})

/** RP-Initiated Logout 1.0 §2. */
export const EndSessionParams = Type.Object({
  id_token_hint: opt('An ID token this server issued to the client: ends the matching session without asking.'),
  client_id: opt('The client (needed for `post_logout_redirect_uri` without a hint).'),
  post_logout_redirect_uri: opt('A post-logout URI the client registered.'),
  state: opt('Appended to the post-logout redirect.'),
})

export const EndSessionConfirm = Type.Object({
  csrf_token: s('The token of the confirmation page.'),
  decision: Type.Union([Type.Literal('logout'), Type.Literal('stay')], { description: '`logout` ends the session; anything else keeps it.' }),
  client_id: opt('As on the confirmation page.'),
  post_logout_redirect_uri: opt('As on the confirmation page.'),
  state: opt('As on the confirmation page.'),
})

export const InteractionParams = Type.Object({ id: s('The pending authorization request (from the redirect to this page).') })

export const InteractionLogin = Type.Object({
  csrf_token: s('The token of the login page.'),
  username: Type.String(),
  password: Type.String(),
})

export const InteractionConsent = Type.Object({
  csrf_token: s('The token of the consent page.'),
  decision: Type.String({ description: '`allow` grants the request; anything else denies it (`access_denied` to the client).' }),
})

/** The refresh cookie of browser clients (`/refresh`, `/logout`). */
export const RefreshCookie = (cookieName: string) => Type.Object({ [cookieName]: s('The HttpOnly refresh cookie set by /login or /token.') })
