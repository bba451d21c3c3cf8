import { readFile } from 'node:fs/promises'
import { KaError } from '../../bundle/errors.js'
import type { PartsCheck } from '../pack/parts.js'

/** What the commands share: option parsing and the errors they word the same way. */

export function concurrency(v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new KaError('EUSAGE', `--concurrency ${JSON.stringify(v)}: give a whole number from 1 to 64`)
  return n
}

export async function readKey(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `--public-key ${path}: cannot read it`)
  })
}

export function partsError(check: PartsCheck): KaError {
  const [first, ...rest] = check.problems
  return new KaError('EVERIFY', `${check.tarName}: ${first!.path}: ${first!.problem}${rest.length ? ` (and ${rest.length} more)` : ''}`, {
    problems: check.problems,
  })
}
