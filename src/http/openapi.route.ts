import type { FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { errorResponses, NoBody } from './schemas/common.js'
import { methodNotAllowed } from './not-allowed.js'
import { openApiDocument } from './openapi.js'

/**
 * GET /openapi.json: the OpenAPI 3.1 document of every endpoint, built once after start-up;
 * public, cacheable, with a strong ETag (304 on `If-None-Match`).
 */
export function openApiRoute(app: FastifyInstance): void {
  let doc: { body: string; etag: string } | undefined
  app.get('/openapi.json', {
    schema: {
      summary: 'The OpenAPI 3.1 document of this server',
      description: 'Generated from the routes’ own schemas. Cacheable (`Cache-Control: public, max-age=300`) with a strong `ETag`.',
      tags: ['operations'],
      documentOnly: { headers: Type.Object({ 'if-none-match': Type.Optional(Type.String({ description: 'An ETag from an earlier answer: 304 when unchanged.' })) }) },
      response: {
        200: Type.Object({ openapi: Type.String(), info: Type.Object({}), paths: Type.Object({}) }, { description: 'The document.' }),
        304: NoBody('Not modified.'),
        ...errorResponses(405, 503),
      },
    },
  }, async (req, reply) => {
    doc ??= openApiDocument(app)
    reply.header('access-control-allow-origin', '*').header('cache-control', 'public, max-age=300').header('etag', doc.etag).header('content-type', 'application/json; charset=utf-8')
    const inm = req.headers['if-none-match']
    if (inm && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === doc!.etag || t.trim() === '*')) return reply.code(304).send()
    return reply.send(doc.body)
  })
  methodNotAllowed(app, '/openapi.json', ['GET'])
}
