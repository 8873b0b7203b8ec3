import type { Config } from '../config.js'
import { serve } from '../server.js'

/** `tessera serve`: runs until SIGTERM/SIGINT; a fatal start-up error ends it (exit 1). */
export async function serveCommand(config: Config): Promise<number> {
  await serve(config)
  await new Promise(() => {}) // the server's signal handlers end the process
  return 0
}
