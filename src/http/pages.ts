import helmet from '@fastify/helmet'
import { Eta } from 'eta'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../config.js'
import { FORM_POST_SCRIPT, stylesheet, TEMPLATES, type TemplateName } from './templates.js'
import { MediaResponse } from './schemas/common.js'

/** Renders the hosted pages: one Eta instance, escaping on (every `<%= %>`). */
export class PageRenderer {
  private readonly eta = new Eta({ autoEscape: true, autoTrim: false, cache: true })
  constructor(private readonly config: Config) {
    for (const [name, text] of Object.entries(TEMPLATES)) this.eta.loadTemplate(`@${name}`, text)
  }

  /** The path prefix of the issuer (pages and assets live under it). */
  get base(): string {
    return new URL(this.config.issuer).pathname.replace(/\/+$/, '')
  }

  render(name: TemplateName, title: string, data: Record<string, unknown>): string {
    const common = { productName: this.config.productName, base: this.base }
    const body = this.eta.render(`@${name}`, { ...common, ...data })
    return this.eta.render('@layout', { ...common, title, body })
  }
}

/** Sends a hosted page: HTML, never cached (the headers of `registerPageHeaders` apply). */
export function sendPage(reply: FastifyReply, pages: PageRenderer, status: number, name: TemplateName, title: string, data: Record<string, unknown>): FastifyReply {
  return reply.code(status).header('content-type', 'text/html; charset=utf-8').send(pages.render(name, title, data))
}

/**
 * The hosted pages' headers, from one plugin (helmet) for every route registered in `routes`:
 * a strict CSP (no inline script or style, nothing from elsewhere, `frame-ancestors 'none'`),
 * `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, and `Cache-Control: no-store`.
 * `form-action` is not restricted: a form-post response and the redirects after a login form go
 * to the client's registered redirect URI.
 */
export async function registerPages(app: FastifyInstance, config: Config, routes: (scope: FastifyInstance, pages: PageRenderer) => void): Promise<void> {
  const pages = new PageRenderer(config)
  await app.register(async (scope) => {
    await scope.register(helmet, {
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'"],
          baseUri: ["'none'"],
          frameAncestors: ["'none'"],
        },
      },
      frameguard: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
      crossOriginEmbedderPolicy: false,
      hsts: config.issuer.startsWith('https:') ? { maxAge: 31_536_000 } : false,
    })
    scope.addHook('onSend', async (_req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
      return payload
    })
    const css = stylesheet({ brand: config.brandColor, background: config.brandBackground })
    const asset = (summary: string, type: string) => ({ schema: { summary, tags: ['browser'], response: { 200: MediaResponse(type, 'The asset (`Cache-Control: public, max-age=300`).') } } })
    scope.get('/assets/pages.css', asset('Stylesheet of the hosted pages', 'text/css'), async (_req, reply) => reply.header('content-type', 'text/css; charset=utf-8').header('cache-control', 'public, max-age=300').send(css))
    scope.get('/assets/form-post.js', asset('Script of the form-post response page', 'text/javascript'), async (_req, reply) => reply.header('content-type', 'text/javascript; charset=utf-8').header('cache-control', 'public, max-age=300').send(FORM_POST_SCRIPT))
    routes(scope, pages)
  })
}
