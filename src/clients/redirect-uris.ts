import { InputError } from '../errors.js'

/**
 * Checks a redirect (or post-logout redirect) URI at registration: absolute, no fragment
 * (RFC 6749 §3.1.2), https, or http only on a loopback host (RFC 8252 §7.3), or a private-use
 * scheme of a native app (RFC 8252 §7.1). The registered string is what requests must match exactly.
 */
export function checkRedirectUri(uri: string, what: string): string {
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    throw new InputError(`${what} must be an absolute URI: ${uri.slice(0, 200)}`)
  }
  if (uri.includes('#')) throw new InputError(`${what} must not have a fragment: ${uri.slice(0, 200)}`)
  if (/[\s\\]/.test(uri)) throw new InputError(`${what} must not contain whitespace or backslashes`)
  if (url.username || url.password) throw new InputError(`${what} must not carry user information`)
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname)
  if (url.protocol === 'http:' && !loopback) throw new InputError(`${what} must use https (http only for localhost): ${uri.slice(0, 200)}`)
  if (url.protocol === 'javascript:' || url.protocol === 'data:' || url.protocol === 'file:') throw new InputError(`${what} has a forbidden scheme`)
  return uri
}

/** Checks a back-channel logout URI: https, or http on a loopback host (OIDC Back-Channel Logout 1.0 §2.2). */
export function checkBackchannelUri(uri: string, what = '--backchannel-logout-uri'): string {
  checkRedirectUri(uri, what)
  const url = new URL(uri)
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InputError(`${what} must be an http(s) URL`)
  return uri
}
