import type { Io } from '../../bundle/report.js'
import { PHASES, VERIFY_SUMMARY } from '../phases/index.js'

/** `./install phases`: the phases, in the order they run. */
export function phasesCommand(io: Io): void {
  io.out(`verify       ${VERIFY_SUMMARY}\n`)
  for (const p of PHASES) io.out(`${p.name.padEnd(12)} ${p.summary}\n`)
}
