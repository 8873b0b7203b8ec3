import type { FastifySchema } from 'fastify'
import type { FastifySchemaValidationError } from 'fastify/types/schema.js'
import { InputError } from '../../errors.js'

/**
 * Fastify's schema errors as a 400 that names the field (`body/profile/email must be string`,
 * `body/nickname is not a known field`): the route option `schemaErrorFormatter` of admin routes.
 */
export function namingSchemaErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const e = errors[0]
  if (!e) return new InputError(`${dataVar} is invalid`)
  const at = `${dataVar}${e.instancePath ?? ''}`
  const params = (e.params ?? {}) as Record<string, unknown>
  if (e.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') return new InputError(`${at}/${params.additionalProperty} is not a known field`)
  if (e.keyword === 'required' && typeof params.missingProperty === 'string') return new InputError(`${at}/${params.missingProperty} is required`)
  return new InputError(`${at} ${e.message ?? 'is invalid'}`)
}

/**
 * A route schema with its OpenAPI members (summary, tags, security) checked by the compiler, usable
 * before @fastify/swagger (which declares them on FastifySchema) is installed.
 */
export const documented = (schema: FastifySchema & { summary: string; tags: string[]; security?: Record<string, string[]>[] }): FastifySchema => schema
