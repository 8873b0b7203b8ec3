/** Who is calling: the client address and user agent, stored with audit events and as a family's "last used". */
export interface RequestContext {
  ip: string | undefined
  userAgent: string | undefined
}

/** Who performed an administrative action, recorded in the audit trail. */
export interface AdminActor {
  /** `admin_api`: an admin access token (its client id below); `cli`: the `tessera` command. */
  via: 'admin_api' | 'cli'
  clientId?: string | undefined
}

/** What an audited use case records about its caller: the request, and the acting admin if any. */
export interface AuditContext extends RequestContext {
  actor?: AdminActor | undefined
}

/** The CLI acts from the server's own host: no address or user agent to record. */
export const CLI_CONTEXT: AuditContext = { ip: undefined, userAgent: undefined, actor: { via: 'cli' } }

/** The audit `detail` members that name an admin actor (none without one). */
export function actorDetail(actor: AdminActor | undefined): Record<string, unknown> {
  if (!actor) return {}
  return { via: actor.via, ...(actor.clientId !== undefined ? { admin_client_id: actor.clientId } : {}) }
}
