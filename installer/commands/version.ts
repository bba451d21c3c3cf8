import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LOCK_FILE } from '../../bundle/layout.js'
import { parseLock } from '../../bundle/lock.js'
import type { Io } from '../../bundle/report.js'
import { TOOL_VERSION } from '../../bundle/version.js'
import type { Flags } from '../context.js'

/** `./install version`: the tool's version, and what this bundle installs (read for display only, not verified). */
export async function versionCommand(flags: Flags, io: Io): Promise<void> {
  io.out(`kube-airgap ${TOOL_VERSION}\n`)
  const text = await readFile(join(flags.bundle, LOCK_FILE), 'utf8').catch(() => undefined)
  if (text === undefined) return void io.out(`bundle: no ${LOCK_FILE} in ${flags.bundle}\n`)
  const lock = parseLock(text, join(flags.bundle, LOCK_FILE))
  io.out(`bundle: Kubernetes ${lock.kubernetes}, ${lock.platforms.join(', ')} (not verified here: ./install verify)\n`)
}
