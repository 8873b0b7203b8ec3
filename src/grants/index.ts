import type { GrantType } from '../clients/clients.store.js'
import { clientCredentialsGrant } from './client-credentials.js'
import { passwordGrant } from './password.js'
import { refreshTokenGrant } from './refresh-token.js'
import type { Grant } from './types.js'

/** The grants `/token` serves, by `grant_type`. */
export const GRANTS: ReadonlyMap<GrantType, Grant> = new Map<GrantType, Grant>([
  ['client_credentials', clientCredentialsGrant],
  ['refresh_token', refreshTokenGrant],
  ['password', passwordGrant],
])
