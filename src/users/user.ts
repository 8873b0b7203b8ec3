/** A user as the rest of Tessera sees it. */
export interface User {
  id: string
  username: string
  passwordHash: string
  roles: string[]
  disabled: boolean
  createdAt: Date
}

/** Usernames are compared case-insensitively; they are stored lower-cased. */
export function normalizeUsername(username: string): string {
  return username.normalize('NFC').toLowerCase()
}
