import { dirname, join } from 'node:path'
import type { Io } from '../../bundle/report.js'
import { checkParts, joinParts, partsFileFor } from '../pack/parts.js'
import { partsError } from './common.js'

/** `bundle join PARTS`: each part checked, then joined into the tar. */
export async function joinCommand(path: string, opts: { out?: string }, io: Io): Promise<void> {
  const out = (s: string) => io.out(s)
  const check = await checkParts(partsFileFor(path) ?? path)
  if (check.problems.length) throw partsError(check)
  const tar = opts.out ?? join(dirname(check.parts[0]!), check.tarName)
  await joinParts(check, tar)
  out(`${tar}\n`)
}
