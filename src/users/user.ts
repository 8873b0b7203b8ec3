/** A user as the rest of Tessera sees it. */
export interface User {
  id: string
  username: string
  passwordHash: string
  roles: string[]
  disabled: boolean
  createdAt: Date
  /** Optional profile attributes (OIDC Core §5.1), released by scope: `profile`, `email`. */
  profile: UserProfile
}

/** A user's optional OIDC profile attributes. */
export interface UserProfile {
  name: string | null
  email: string | null
  emailVerified: boolean
}

/** Usernames are compared case-insensitively; they are stored lower-cased. */
export function normalizeUsername(username: string): string {
  return username.normalize('NFC').toLowerCase()
}
