import type { Client } from './client.js'

/** A client as JSON, never its secret or a hash of it: what `tessera clients list` prints. */
export function clientJson(c: Client) {
  return {
    client_id: c.id,
    name: c.name,
    type: c.isPublic ? ('public' as const) : ('confidential' as const),
    grant_types: c.grantTypes,
    scopes: c.scopes,
    audience: c.audience,
    refresh_delivery: c.refreshDelivery,
    allowed_origins: c.allowedOrigins,
    id_token_signed_response_alg: c.idTokenSignedResponseAlg,
    rate_limit_per_second: c.rateLimitPerSecond,
    // --- authorization-code flow (issue 13)
    redirect_uris: c.redirectUris,
    post_logout_redirect_uris: c.postLogoutRedirectUris,
    first_party: c.firstParty,
    backchannel_logout_uri: c.backchannelLogoutUri,
    require_pushed_authorization_requests: c.requirePushedAuthorizationRequests,
    // ---
    disabled: c.disabled,
    created_at: c.createdAt,
  }
}

/**
 * A client as the admin API shows it: `clientJson`, its version (the `ETag` is `"v<version>"`),
 * when it last changed, and until when the secret its last rotation replaced still works (null:
 * no such secret; a time in the past: it has stopped).
 */
export function adminClientJson(c: Client) {
  return {
    ...clientJson(c),
    updated_at: c.updatedAt,
    version: c.version,
    previous_secret_expires_at: c.previousSecretExpiresAt,
  }
}
