// Helpers for the authorization-code flow tests: a cookie jar over app.inject, PKCE, the pages' forms.
import { createHash, randomBytes } from 'node:crypto'
import type { TestApp } from './app.js'
import { form, FORM } from './app.js'

export const REDIRECT = 'https://rp.example.com/cb'
export const PASSWORD = 'correct horse battery'

export type Reply = Awaited<ReturnType<TestApp['app']['inject']>>

/** A PKCE pair (RFC 7636, S256). */
export function pkce() {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') }
}

/** A browser: cookies kept per name (paths ignored: the tests only use `/`). */
export class Browser {
  cookies = new Map<string, string>()
  constructor(readonly app: Pick<TestApp, 'app'>) {}
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }
  keep(res: Reply): Reply {
    const set = res.headers['set-cookie']
    for (const c of set === undefined ? [] : Array.isArray(set) ? set : [set]) {
      const [pair] = c.split(';')
      const i = pair!.indexOf('=')
      const name = pair!.slice(0, i)
      const value = pair!.slice(i + 1)
      if (value === '' || /max-age=0/i.test(c)) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
    return res
  }
  async get(url: string, headers: Record<string, string> = {}): Promise<Reply> {
    return this.keep(await this.app.app.inject({ method: 'GET', url, headers: { cookie: this.header(), ...headers } }))
  }
  async post(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Reply> {
    return this.keep(await this.app.app.inject({ method: 'POST', url, headers: { ...FORM, cookie: this.header(), ...headers }, payload: form(fields) }))
  }
}

/** The path of a Location header (the app serves at the issuer's root in tests). */
export function location(res: Reply): string {
  return String(res.headers.location)
}

/** A hidden field's value on a page. */
export function field(html: string, name: string): string | undefined {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html)
  return m?.[1]?.replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')
}

/** The action of the page's (first) form. */
export function action(html: string): string {
  const m = /<form method="post" action="([^"]*)"/.exec(html)
  if (!m) throw new Error(`no form on the page: ${html.slice(0, 500)}`)
  return m[1]!.replace(/&amp;/g, '&')
}

/** Authorization request query string. */
export function authorizeUrl(params: Record<string, string>): string {
  return `/authorize?${new URLSearchParams(params).toString()}`
}

/** The query parameters of an authorization response redirect. */
export function callback(res: Reply): URLSearchParams {
  if (res.statusCode !== 303) throw new Error(`expected a redirect, got ${res.statusCode}: ${res.body.slice(0, 400)}`)
  return new URL(location(res)).searchParams
}

/** Creates an authorization-code client. */
export function codeClient(app: TestApp, input: Parameters<TestApp['createClient']>[0] = {}) {
  return app.createClient({ name: 'Relying Party', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'email', 'read'], redirectUris: [REDIRECT], ...input })
}

/**
 * Runs /authorize → login page → login (→ consent, allowed) → callback; returns the callback
 * parameters. `browser` keeps the SSO cookie for later requests.
 */
export async function authorize(browser: Browser, clientId: string, opts: { challenge: string; username?: string; password?: string; extra?: Record<string, string> }) {
  let res = await browser.get(authorizeUrl({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, scope: 'openid profile', code_challenge: opts.challenge, code_challenge_method: 'S256', state: 'st', nonce: 'n-1', ...opts.extra }))
  for (let i = 0; i < 6; i++) {
    if (res.statusCode === 303 && location(res).startsWith(REDIRECT)) return callback(res)
    if (res.statusCode === 303) {
      res = await browser.get(location(res))
      continue
    }
    if (res.statusCode !== 200) throw new Error(`unexpected ${res.statusCode}: ${res.body.slice(0, 400)}`)
    const csrf = field(res.body, 'csrf_token')!
    if (res.body.includes('name="password"')) res = await browser.post(action(res.body), { csrf_token: csrf, username: opts.username ?? 'alice', password: opts.password ?? PASSWORD })
    else if (res.body.includes('value="allow"')) res = await browser.post(action(res.body), { csrf_token: csrf, decision: 'allow' })
    else throw new Error(`unexpected page: ${res.body.slice(0, 400)}`)
  }
  throw new Error('too many steps')
}

/** POST /token for a code. */
export function redeem(app: Pick<TestApp, 'app'>, client: { id: string; secret?: string | undefined }, code: string, verifier: string, extra: Record<string, string> = {}) {
  const params: Record<string, string> = { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: client.id, ...extra }
  if (client.secret !== undefined) params.client_secret = client.secret
  return app.app.inject({ method: 'POST', url: '/token', headers: FORM, payload: form(params) })
}
