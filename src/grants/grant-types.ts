/**
 * The grant types `/token` serves: the one list that client registration, the grant table,
 * discovery (`grant_types_supported`) and the metrics labels are built from.
 */
export const GRANT_TYPES = ['client_credentials', 'refresh_token', 'password', 'authorization_code'] as const
export type GrantType = (typeof GRANT_TYPES)[number]
