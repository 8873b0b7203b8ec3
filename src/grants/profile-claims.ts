import type { UserProfile } from '../users/user.js'

/**
 * OIDC Core §5.4: profile claims by scope. `profile` releases `name` (and `preferred_username`,
 * added by the issuer), `email` releases `email` and `email_verified`; absent attributes are omitted.
 */
export function profileClaims(profile: UserProfile, scope: readonly string[]): Record<string, unknown> {
  const claims: Record<string, unknown> = {}
  if (scope.includes('profile') && profile.name !== null) claims.name = profile.name
  if (scope.includes('email') && profile.email !== null) {
    claims.email = profile.email
    claims.email_verified = profile.emailVerified
  }
  return claims
}
