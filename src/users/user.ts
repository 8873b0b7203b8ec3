/** A user as the rest of Tessera sees it. */
export interface User {
  id: string
  username: string
  passwordHash: string
  roles: string[]
  disabled: boolean
  createdAt: Date
  updatedAt: Date
  /** Bumped by every admin-visible change: the admin API's ETag `"v<N>"`. */
  version: number
  /** Optional profile attributes (OIDC Core §5.1), released by scope: `profile`, `email`. */
  profile: UserProfile
}

/** A user's optional OIDC profile attributes. */
export interface UserProfile {
  name: string | null
  email: string | null
  emailVerified: boolean
}

/**
 * The one username rule (docs/admin-users.md "Usernames"): Unicode NFKC, then lower case (then NFKC
 * once more, so that the rule is idempotent even where lower-casing yields a decomposable form).
 * Usernames are stored normalised and unique under the rule: `Ａlice` (full-width A), `ALICE` and
 * `alice` are one user, at login and at create (409).
 */
export function normalizeUsername(username: string): string {
  return username.normalize('NFKC').toLowerCase().normalize('NFKC')
}
