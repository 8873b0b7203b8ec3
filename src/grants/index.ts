import { authorizationCodeGrant } from './authorization-code.js'
import { clientCredentialsGrant } from './client-credentials.js'
import type { GrantType } from './grant-types.js'
import { passwordGrant } from './password.js'
import { refreshTokenGrant } from './refresh-token.js'
import type { Grant } from './types.js'

/** The grants `/token` serves, one per grant type (the compiler checks none is missing). */
const GRANT_TABLE: Readonly<Record<GrantType, Grant>> = {
  client_credentials: clientCredentialsGrant,
  refresh_token: refreshTokenGrant,
  password: passwordGrant,
  authorization_code: authorizationCodeGrant,
}

/** The grant for a `grant_type` parameter, or undefined for anything Tessera does not serve. */
export function grantFor(grantType: string): Grant | undefined {
  return Object.hasOwn(GRANT_TABLE, grantType) ? GRANT_TABLE[grantType as GrantType] : undefined
}
