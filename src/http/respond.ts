import type { FastifyReply } from 'fastify'
import type { Client } from '../clients/client.js'
import type { TokenResponse } from '../grants/types.js'
import type { Services } from '../services.js'
import { setRefreshCookie } from './refresh-cookie.js'

/**
 * Sends a token response (RFC 6749 §5.1) with `no-store`. Browser clients get the refresh
 * token only as an HttpOnly cookie, never in the body; API and native clients in the body.
 */
export function sendTokens(reply: FastifyReply, s: Services, client: Client, tokens: TokenResponse): FastifyReply {
  const { refresh, ...body } = tokens
  reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
  if (refresh === undefined) return reply.send(body)
  if (client.refreshDelivery === 'cookie') {
    setRefreshCookie(reply, s.config, refresh.token, refresh.familyExpiresAt, s.clock.nowMs())
    return reply.send(body)
  }
  return reply.send({ ...body, refresh_token: refresh.token })
}
