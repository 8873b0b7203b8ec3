import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../config.js'
import { OAuthError } from '../errors.js'

/**
 * The refresh cookie is set twice with one value: once for the refresh route and once for
 * the logout route, so no other path of the origin ever receives it (narrow `Path`).
 */
export function refreshCookiePaths(config: Config): string[] {
  const base = new URL(config.issuer).pathname.replace(/\/+$/, '')
  return [`${base}/refresh`, `${base}/logout`]
}

export function setRefreshCookie(reply: FastifyReply, config: Config, token: string, expiresAt: Date, nowMs: number): void {
  const maxAge = Math.max(0, Math.floor((expiresAt.getTime() - nowMs) / 1000))
  for (const path of refreshCookiePaths(config)) {
    reply.setCookie(config.cookieName, token, { httpOnly: true, secure: config.cookieSecure, sameSite: config.cookieSameSite, path, maxAge })
  }
}

export function clearRefreshCookie(reply: FastifyReply, config: Config): void {
  for (const path of refreshCookiePaths(config)) {
    reply.setCookie(config.cookieName, '', { httpOnly: true, secure: config.cookieSecure, sameSite: config.cookieSameSite, path, maxAge: 0, expires: new Date(0) })
  }
}

/**
 * The refresh token from the cookie. Two cookies of that name (one injected by a sibling
 * domain or a broader path) make the request ambiguous, and it is refused.
 */
export function readRefreshCookie(req: FastifyRequest, config: Config): string {
  const header = req.headers.cookie ?? ''
  const occurrences = header.split(';').filter((part) => part.trim().startsWith(`${config.cookieName}=`)).length
  if (occurrences > 1) throw new OAuthError('invalid_request', 'more than one refresh cookie was sent')
  const value = header === '' ? undefined : req.server.parseCookie(header)[config.cookieName]
  if (!value) throw new OAuthError('invalid_grant', 'no refresh cookie', 'no cookie')
  return value
}
