import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Client } from '../clients/client.js'
import { OAuthError } from '../errors.js'
import { endSsoSessions, ssoSessionFromCookie } from '../authorization/sso-session.js'
import type { Services } from '../services.js'
import { methodNotAllowed } from './not-allowed.js'
import { formParams, isForm, parseForm, requestContext } from './params.js'
import { sendPage, type PageRenderer } from './pages.js'
import { clearSsoCookie, readCookie } from './sso-cookie.js'
import { HtmlPage, Redirect } from './schemas/common.js'
import { EndSessionConfirm, EndSessionParams } from './schemas/oauth.js'

const logoutResponses = {
  200: HtmlPage('The confirmation page, or "signed out" / "still signed in".'),
  303: Redirect('To the registered `post_logout_redirect_uri`, with `state`.'),
  400: HtmlPage('An error page (unknown client, unregistered post-logout URI, bad hint).'),
  403: HtmlPage('An error page (`access_denied`: the form’s CSRF token is missing or wrong).'),
  503: HtmlPage('Temporarily unavailable (with `Retry-After`).'),
}

/** The logout form's CSRF token: derived from the SSO cookie, which a cross-site page cannot read. */
function logoutCsrf(cookie: string): string {
  return createHash('sha256').update(`tessera logout\0${cookie}`).digest('base64url')
}

/**
 * OIDC RP-Initiated Logout 1.0: `end_session_endpoint` (GET or POST). With a valid `id_token_hint`
 * for the browser's session the session ends at once; otherwise a confirmation page (CSRF-protected)
 * asks first. The browser goes back only to a registered `post_logout_redirect_uri`, with `state`.
 */
export function endSessionRoutes(app: FastifyInstance, s: Services, pages: PageRenderer): void {
  const { config } = s
  const lifetimes = { idleSeconds: config.ssoSessionIdleTtlSeconds, absoluteSeconds: config.ssoSessionAbsoluteTtlSeconds }
  const base = pages.base

  const params = (req: FastifyRequest): Record<string, string> => {
    const q = req.url.indexOf('?')
    if (req.method === 'GET' || req.method === 'HEAD') return q === -1 ? {} : parseForm(req.url.slice(q + 1))
    if (!isForm(req)) throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded')
    return formParams(req)
  }

  /** Where to send the browser afterwards: only a URI the client registered (SECURITY #165). */
  const afterLogout = (reply: FastifyReply, client: Client | undefined, uri: string | undefined, state: string | undefined) => {
    if (uri === undefined || client === undefined) return sendPage(reply, pages, 200, 'message', 'Signed out', { message: 'You are signed out.', alert: false })
    const url = new URL(uri)
    if (state !== undefined) url.searchParams.append('state', state)
    return reply.code(303).header('location', url.toString()).send()
  }

  const endSession = async (req: FastifyRequest, reply: FastifyReply, sessionId: string) => {
    const ended = await endSsoSessions(s.db, { id: sessionId }, 'logout', requestContext(req))
    // Back-channel logout after the commit; the browser does not wait for it.
    void s.backchannel.notify(ended)
    clearSsoCookie(reply, config)
  }

  /** Checks the request's client and redirect URI before anything happens (errors are pages, never redirects). */
  const resolve = async (p: Record<string, string>) => {
    const hint = p.id_token_hint ? await s.tokens.verifyIdTokenHint(p.id_token_hint) : undefined
    if (hint && p.client_id && p.client_id !== hint.aud) throw new OAuthError('invalid_request', 'client_id does not match the id_token_hint')
    const clientId = hint?.aud ?? (p.client_id || undefined)
    const client = clientId ? await s.clients.get(clientId) : undefined
    if (clientId && (!client || client.disabled)) throw new OAuthError('invalid_request', 'unknown client')
    const uri = p.post_logout_redirect_uri || undefined
    if (uri !== undefined && (!client || !client.postLogoutRedirectUris.includes(uri))) throw new OAuthError('invalid_request', 'the post_logout_redirect_uri is not registered for this client')
    if (p.state !== undefined && p.state.length > 4096) throw new OAuthError('invalid_request', 'state is too long')
    return { hint, client, uri, state: p.state || undefined }
  }

  const endSessionEndpoint = async (req: FastifyRequest, reply: FastifyReply) => {
    const p = params(req)
    const { hint, client, uri, state } = await resolve(p)
    const cookie = readCookie(req, config.ssoCookieName)
    const sso = await ssoSessionFromCookie(s.db, cookie, lifetimes)
    if (!sso) return afterLogout(reply, client, uri, state)
    // The hint names this browser's session (its user, and its sid when it has one): no question asked.
    if (hint && hint.sub === sso.userId && (hint.sid === undefined || hint.sid === sso.id)) {
      await endSession(req, reply, sso.id)
      return afterLogout(reply, client, uri, state)
    }
    return sendPage(reply, pages, 200, 'logout', 'Sign out?', {
      action: `${base}/session/end/confirm`, csrf: logoutCsrf(cookie!), state, postLogoutRedirectUri: uri, clientId: client?.id, clientName: client?.name,
    })
  }
  const endSessionSchema = (method: 'GET' | 'POST') => ({
    summary: `End session (OIDC RP-Initiated Logout 1.0), by ${method}`,
    description: 'With an `id_token_hint` for the browser’s session it ends at once; otherwise a confirmation page asks first. Ending a session sends back-channel logout tokens.',
    tags: ['browser'],
    ...(method === 'GET' ? { documentOnly: { querystring: EndSessionParams } } : { consumes: ['application/x-www-form-urlencoded'], documentOnly: { body: EndSessionParams } }),
    response: logoutResponses,
  })
  app.get('/session/end', { schema: endSessionSchema('GET') }, endSessionEndpoint)
  app.post('/session/end', { schema: endSessionSchema('POST') }, endSessionEndpoint)
  methodNotAllowed(app, '/session/end', ['GET', 'POST'])

  app.post('/session/end/confirm', {
    schema: {
      summary: 'Submit the logout confirmation form',
      tags: ['browser'],
      consumes: ['application/x-www-form-urlencoded'],
      documentOnly: { body: EndSessionConfirm },
      response: logoutResponses,
    },
  }, async (req, reply) => {
    const p = formParams(req)
    const { client, uri, state } = await resolve({ ...p, id_token_hint: '' })
    const cookie = readCookie(req, config.ssoCookieName)
    const sso = await ssoSessionFromCookie(s.db, cookie, lifetimes)
    if (!sso) return afterLogout(reply, client, uri, state)
    const expected = Buffer.from(logoutCsrf(cookie!))
    const token = Buffer.from(p.csrf_token ?? '')
    if (token.length !== expected.length || !timingSafeEqual(token, expected)) {
      throw new OAuthError('access_denied', 'the form has expired or did not come from this page', 'logout csrf token missing or wrong')
    }
    if (p.decision === 'logout') await endSession(req, reply, sso.id)
    else return sendPage(reply, pages, 200, 'message', 'Still signed in', { message: 'You are still signed in.', alert: false })
    return afterLogout(reply, client, uri, state)
  })
  methodNotAllowed(app, '/session/end/confirm', ['POST'])
}
