import { timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Client } from '../clients/client.js'
import { OAuthError } from '../errors.js'
import { claimPushedRequest, findPendingRequest, setRequestLogin, type PendingRequest } from '../authorization/authorization.store.js'
import { describeScope, nextStep, pushRequest, REQUEST_URI_PREFIX, startPendingRequest, type NextStep } from '../authorization/authorize.js'
import { giveConsent } from '../authorization/consents.js'
import { RedirectError, responseParams, responseTarget, trustedRedirectUri, validateAuthorization, type AuthorizationParams, type ResponseTarget } from '../authorization/request.js'
import { hashSecret, newBrowserSecret, ssoSessionFromCookie, startSsoSession } from '../authorization/sso-session.js'
import type { SsoSession } from '../authorization/sso-sessions.store.js'
import type { Services } from '../services.js'
import { findUserById } from '../users/users.store.js'
import { authenticateClient } from './client-auth.js'
import { toOAuthError } from './error-handler.js'
import { methodNotAllowed } from './not-allowed.js'
import { formParams, isForm, parseForm, requestContext } from './params.js'
import { sendPage, type PageRenderer } from './pages.js'
import { readCookie, setBrowserCookie, setSsoCookie } from './sso-cookie.js'
import { CLIENT_AUTH, errorResponses, HtmlPage, Redirect } from './schemas/common.js'
import { AuthorizeParams, InteractionConsent, InteractionLogin, InteractionParams, ParRequest, ParResponse } from './schemas/oauth.js'

// Errors of the page routes are HTML pages (or redirects to the client), never JSON.
const pageResponses = (ok: string) => ({
  200: HtmlPage(ok),
  303: Redirect('To the next page, or back to the client’s redirect URI with `code` (or `error`), `state` and `iss`.'),
  400: HtmlPage('An error page: the request cannot be sent back to the client.'),
  403: HtmlPage('An error page (`access_denied`: another browser, or a form without its CSRF token).'),
  429: HtmlPage('Too many failed sign-ins (with `Retry-After`).'),
  503: HtmlPage('Temporarily unavailable (with `Retry-After`).'),
})

const safeEqual = (a: string, b: string) => {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** The parameters of an authorization request: the query of a GET, the form body of a POST (OIDC Core §3.1.2.1). */
function authorizeParams(req: FastifyRequest): Record<string, string> {
  const q = req.url.indexOf('?')
  if (req.method === 'GET' || req.method === 'HEAD') return q === -1 ? {} : parseForm(req.url.slice(q + 1))
  if (!isForm(req)) throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded')
  if (q !== -1) throw new OAuthError('invalid_request', 'parameters must be sent in the body of a POST')
  return req.body as Record<string, string>
}

/**
 * `/authorize`, the pushed-request endpoint and the hosted login and consent pages (issue 13).
 * Errors before the redirect URI is trusted are pages; later ones go back to the client.
 */
export function authorizeRoutes(app: FastifyInstance, s: Services, pages: PageRenderer): void {
  const { config } = s
  const lifetimes = { idleSeconds: config.ssoSessionIdleTtlSeconds, absoluteSeconds: config.ssoSessionAbsoluteTtlSeconds }
  const flowDeps = { db: s.db, clock: s.clock, codeTtlSeconds: config.authorizationCodeTtlSeconds }
  const base = pages.base

  /** RFC 6749 §4.1.2 + RFC 9207: `code` or `error`, then `state`, then `iss`; by query or form post. */
  const respond = (reply: FastifyReply, target: ResponseTarget, result: Record<string, string>) => {
    const fields = { ...responseParams(target, result), iss: config.issuer }
    if (target.responseMode === 'form_post') return sendPage(reply, pages, 200, 'formPost', 'Continue', { action: target.redirectUri, fields })
    const url = new URL(target.redirectUri)
    for (const [k, v] of Object.entries(fields)) url.searchParams.append(k, v)
    return reply.code(303).header('location', url.toString()).send()
  }

  const errorPage = (reply: FastifyReply, e: OAuthError) => {
    if (e.status === 503 || e.status === 429) reply.header('retry-after', String(e.retryAfterSeconds ?? 5))
    return sendPage(reply, pages, e.status, 'message', 'Something went wrong', { message: e.description, detail: e.code, alert: true })
  }

  // Page routes answer with pages: a redirectable error goes to the client, anything else is a page.
  app.setErrorHandler((err, req, reply) => {
    if (err instanceof RedirectError) {
      req.log.info({ code: err.error.code, detail: err.error.detail }, 'authorization error')
      return respond(reply, err.target, { error: err.error.code, error_description: err.error.description })
    }
    const e = toOAuthError(err)
    req.log[e.status >= 500 ? 'error' : 'info']({ code: e.code, detail: e.detail, err: e.code === 'server_error' ? err : undefined }, 'page error')
    reply.server.metrics?.oauthError(e.code)
    return errorPage(reply, e)
  })

  const redirectable = <T>(target: ResponseTarget, fn: () => Promise<T>): Promise<T> =>
    fn().catch((err: unknown) => {
      if (err instanceof OAuthError && err.status < 500) throw new RedirectError(err, target)
      throw err
    })

  const clientFor = async (clientId: string | undefined): Promise<Client> => {
    const client = clientId ? await s.clients.get(clientId) : undefined
    if (!client || client.disabled) throw new OAuthError('invalid_request', 'unknown client', `unknown or disabled client ${String(clientId).slice(0, 64)}`)
    return client
  }

  const session = (req: FastifyRequest) => ssoSessionFromCookie(s.db, readCookie(req, config.ssoCookieName), lifetimes)

  /** Acts on the next step: a code goes back to the client, a page is shown (through a redirect to the request's page). */
  const act = async (reply: FastifyReply, step: NextStep, params: AuthorizationParams, pendingId: string | undefined, browserCookie: () => string) => {
    if (step.kind === 'code') return respond(reply, params, { code: step.code })
    const id = pendingId ?? (await startPendingRequest(s.db, params, browserCookie(), config.authorizationRequestTtlSeconds)).id
    return reply.code(303).header('location', `${base}/interaction/${id}`).send()
  }

  const authorize = async (req: FastifyRequest, reply: FastifyReply) => {
    const raw = authorizeParams(req)
    const client = await clientFor(raw.client_id)
    let params: AuthorizationParams
    if (raw.request_uri !== undefined) {
      // RFC 9126 §4: only the pushed parameters count; the request_uri is used once.
      const id = raw.request_uri.startsWith(REQUEST_URI_PREFIX) ? raw.request_uri.slice(REQUEST_URI_PREFIX.length) : undefined
      const pushed = id && id.length <= 64 ? await claimPushedRequest(s.db, id, client.id) : undefined
      if (!pushed) throw new OAuthError('invalid_request_uri', 'the request_uri is invalid, expired or used')
      params = pushed
    } else {
      const target = responseTarget(raw, trustedRedirectUri(raw, client))
      params = await redirectable(target, async () => {
        if (client.requirePushedAuthorizationRequests) throw new OAuthError('invalid_request', 'this client must use pushed authorization requests')
        return validateAuthorization(raw, client, target)
      })
    }
    let cookie: string | undefined
    const browserCookie = () => {
      cookie ??= readCookie(req, config.browserCookieName) ?? newBrowserSecret()
      setBrowserCookie(reply, config, cookie)
      return cookie
    }
    const step = await redirectable(params, async () => nextStep(flowDeps, client, params, await session(req), { freshLogin: false, consented: false, pendingId: undefined }, requestContext(req)))
    return act(reply, step, params, undefined, browserCookie)
  }

  const authorizeSchema = (method: 'GET' | 'POST') => ({
    summary: `Authorization endpoint (RFC 6749 §4.1, OIDC Core §3.1.2), by ${method}`,
    description: 'Starts the authorization-code flow (PKCE S256 required). Redirects to the login or consent page, or straight back to the client with a code. Errors before the redirect URI is trusted are HTML pages.',
    tags: ['browser'],
    ...(method === 'GET' ? { documentOnly: { querystring: AuthorizeParams } } : { consumes: ['application/x-www-form-urlencoded'], documentOnly: { body: AuthorizeParams } }),
    response: pageResponses('A form-post response page (`response_mode=form_post`).'),
  })
  app.get('/authorize', { schema: authorizeSchema('GET') }, authorize)
  app.post('/authorize', { schema: authorizeSchema('POST') }, authorize)
  methodNotAllowed(app, '/authorize', ['GET', 'POST'])

  /** The pending request of an interaction page, only in the browser that started it. */
  const pendingOf = async (req: FastifyRequest<{ Params: { id: string } }>): Promise<{ pending: PendingRequest; client: Client }> => {
    const id = req.params.id
    const pending = /^[A-Za-z0-9_-]{32}$/.test(id) ? await findPendingRequest(s.db, id) : undefined
    if (!pending) throw new OAuthError('invalid_request', 'this sign-in request has expired or was completed; go back to the application and start again')
    const cookie = readCookie(req, config.browserCookieName)
    if (cookie === undefined || pending.browserHash === null || !hashSecret(cookie).equals(pending.browserHash)) {
      throw new OAuthError('access_denied', 'this sign-in request belongs to another browser; go back to the application and start again', 'browser binding cookie missing or different')
    }
    return { pending, client: await clientFor(pending.clientId) }
  }

  /** SECURITY #155: every form carries the CSRF token of its pending request. */
  const checkCsrf = (req: FastifyRequest, pending: PendingRequest): Record<string, string> => {
    const body = formParams(req)
    const token = body.csrf_token
    if (token === undefined || pending.csrfToken === null || !safeEqual(token, pending.csrfToken)) {
      throw new OAuthError('access_denied', 'the form has expired or did not come from this page; go back to the application and start again', 'csrf token missing or wrong')
    }
    return body
  }

  const loginPage = (reply: FastifyReply, pending: PendingRequest, client: Client, status: number, username: string, error: string | undefined) =>
    sendPage(reply, pages, status, 'login', 'Sign in', { action: `${base}/interaction/${pending.id}/login`, csrf: pending.csrfToken, clientName: client.name, username, error })

  const consentPage = (reply: FastifyReply, pending: PendingRequest, client: Client, sso: SsoSession, scopes: string[], username: string) =>
    sendPage(reply, pages, 200, 'consent', 'Allow access?', { action: `${base}/interaction/${pending.id}/consent`, csrf: pending.csrfToken, clientName: client.name, scopes: scopes.map(describeScope), username, sid: sso.id })

  const show = async (req: FastifyRequest, reply: FastifyReply, pending: PendingRequest, client: Client, sso: SsoSession | undefined, flow: { freshLogin: boolean; consented: boolean }) => {
    const step = await redirectable(pending.params, () => nextStep(flowDeps, client, pending.params, sso, { ...flow, pendingId: pending.id }, requestContext(req)))
    if (step.kind === 'login') return loginPage(reply, pending, client, 200, pending.params.loginHint ?? '', undefined)
    if (step.kind === 'consent') {
      const user = await findUserById(s.db, sso!.userId)
      return consentPage(reply, pending, client, sso!, step.scopes, user?.username ?? '')
    }
    return respond(reply, pending.params, { code: step.code })
  }

  app.get<{ Params: { id: string } }>('/interaction/:id', {
    schema: {
      summary: 'Hosted sign-in or consent page of a pending authorization request',
      description: 'Only in the browser that started the request (binding cookie).',
      tags: ['browser'],
      documentOnly: { params: InteractionParams },
      response: pageResponses('The login or consent page.'),
    },
  }, async (req, reply) => {
    const { pending, client } = await pendingOf(req)
    const sso = await session(req)
    return show(req, reply, pending, client, sso, { freshLogin: sso !== undefined && sso.id === pending.sessionId, consented: false })
  })

  app.post<{ Params: { id: string } }>('/interaction/:id/login', {
    schema: {
      summary: 'Submit the hosted login form',
      description: 'Checks the password (throttled like every password check), starts the SSO session, then continues the request.',
      tags: ['browser'],
      consumes: ['application/x-www-form-urlencoded'],
      documentOnly: { params: InteractionParams, body: InteractionLogin },
      response: pageResponses('The login page again, with the error.'),
    },
  }, async (req, reply) => {
    const { pending, client } = await pendingOf(req)
    const body = checkCsrf(req, pending)
    const username = body.username ?? ''
    const password = body.password ?? ''
    const ctx = requestContext(req)
    if (username === '' || password === '') return loginPage(reply, pending, client, 400, username, 'Enter your username and password.')
    let userId: string
    try {
      // The same check as /login and the password grant (and so the same throttling).
      userId = (await s.users.authenticate(client.id, username, password, ctx)).id
    } catch (err) {
      if (err instanceof OAuthError && err.code === 'invalid_grant') return loginPage(reply, pending, client, 400, username, 'Incorrect username or password.')
      if (err instanceof OAuthError && err.code === 'invalid_request') return loginPage(reply, pending, client, 400, username, err.description)
      if (err instanceof OAuthError && err.code === 'temporarily_unavailable') {
        // Throttled (429) or the hashing queue is full (503): the form again, with the wait it names.
        const wait = err.retryAfterSeconds ?? 5
        reply.header('retry-after', String(wait))
        const why = err.status === 429 ? 'Too many failed sign-in attempts.' : 'The server is busy.'
        return loginPage(reply, pending, client, err.status, username, `${why} Try again in ${wait} second${wait === 1 ? '' : 's'}.`)
      }
      throw err
    }
    const { session: sso, cookie } = await startSsoSession(s.db, userId, readCookie(req, config.ssoCookieName), lifetimes, ctx)
    await s.users.recordLogin(client.id, userId, ctx)
    await setRequestLogin(s.db, pending.id, userId, sso.id)
    setSsoCookie(reply, config, cookie, config.ssoSessionAbsoluteTtlSeconds)
    const step = await redirectable(pending.params, () => nextStep(flowDeps, client, pending.params, sso, { freshLogin: true, consented: false, pendingId: pending.id }, ctx))
    // Post/redirect/get: the consent page is fetched with GET.
    return act(reply, step, pending.params, pending.id, () => '')
  })

  app.post<{ Params: { id: string } }>('/interaction/:id/consent', {
    schema: {
      summary: 'Submit the hosted consent form',
      tags: ['browser'],
      consumes: ['application/x-www-form-urlencoded'],
      documentOnly: { params: InteractionParams, body: InteractionConsent },
      response: pageResponses('A form-post response page (`response_mode=form_post`).'),
    },
  }, async (req, reply) => {
    const { pending, client } = await pendingOf(req)
    const body = checkCsrf(req, pending)
    const sso = await session(req)
    if (!sso || (pending.userId !== null && pending.userId !== sso.userId)) return reply.code(303).header('location', `${base}/interaction/${pending.id}`).send()
    const ctx = requestContext(req)
    if (body.decision !== 'allow') throw new RedirectError(new OAuthError('access_denied', 'the user denied the request'), pending.params)
    await giveConsent(s.db, sso.userId, client.id, pending.params.scope, ctx)
    return show(req, reply, pending, client, sso, { freshLogin: sso.id === pending.sessionId, consented: true })
  })
  methodNotAllowed(app, '/interaction/:id', ['GET'])
  methodNotAllowed(app, '/interaction/:id/login', ['POST'])
  methodNotAllowed(app, '/interaction/:id/consent', ['POST'])
}

/** POST /par (RFC 9126 §2): an authenticated client pushes its authorization request. */
export function parRoute(app: FastifyInstance, s: Services): void {
  app.post('/par', {
    schema: {
      summary: 'Push an authorization request (RFC 9126)',
      description: 'The authenticated client sends the parameters of /authorize; the answer’s `request_uri` is then used once at /authorize with the `client_id`.',
      tags: ['oauth'],
      security: CLIENT_AUTH,
      consumes: ['application/x-www-form-urlencoded'],
      documentOnly: { body: ParRequest },
      response: { 201: ParResponse, ...errorResponses(400, 401, 413, 503) },
    },
  }, async (req, reply) => {
    const params = formParams(req)
    const { client } = await authenticateClient(req, params, s.clients)
    if (params.request_uri !== undefined) throw new OAuthError('invalid_request', 'request_uri is not allowed in a pushed request')
    const target = responseTarget(params, trustedRedirectUri(params, client))
    const validated = validateAuthorization(params, client, target)
    const requestUri = await pushRequest(s.db, validated, s.config.parTtlSeconds)
    return reply.code(201).header('cache-control', 'no-store').send({ request_uri: requestUri, expires_in: s.config.parTtlSeconds })
  })
  methodNotAllowed(app, '/par', ['POST'])
}
