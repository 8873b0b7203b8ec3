import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../config.js'

/**
 * A cookie's value, or undefined when absent or sent more than once (one injected with a broader
 * path or by a sibling domain makes the request ambiguous: SECURITY #114).
 */
export function readCookie(req: FastifyRequest, name: string): string | undefined {
  const header = req.headers.cookie ?? ''
  if (header.split(';').filter((part) => part.trim().startsWith(`${name}=`)).length !== 1) return undefined
  return req.server.parseCookie(header)[name] || undefined
}

/** The SSO cookie: `__Host-` (Secure, Path=/, no Domain), HttpOnly, SameSite=Lax so top-level redirects from apps carry it. */
export function setSsoCookie(reply: FastifyReply, config: Config, value: string, maxAgeSeconds: number): void {
  reply.setCookie(config.ssoCookieName, value, { httpOnly: true, secure: config.cookieSecure, sameSite: 'lax', path: '/', maxAge: maxAgeSeconds })
}

export function clearSsoCookie(reply: FastifyReply, config: Config): void {
  reply.setCookie(config.ssoCookieName, '', { httpOnly: true, secure: config.cookieSecure, sameSite: 'lax', path: '/', maxAge: 0, expires: new Date(0) })
}

/** The browser-binding cookie of pending requests (a browser session cookie). */
export function setBrowserCookie(reply: FastifyReply, config: Config, value: string): void {
  reply.setCookie(config.browserCookieName, value, { httpOnly: true, secure: config.cookieSecure, sameSite: 'lax', path: '/' })
}
