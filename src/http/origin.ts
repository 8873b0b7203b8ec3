import type { FastifyRequest } from 'fastify'
import type { RequestOrigin } from '../clients/client.js'

/** The request's `Origin` and `Sec-Fetch-Site`, for the CSRF guard of cookie requests. */
export function originOf(req: FastifyRequest): RequestOrigin {
  const site = req.headers['sec-fetch-site']
  return { origin: req.headers.origin, site: typeof site === 'string' ? site : undefined }
}
