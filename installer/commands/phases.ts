import { type Io, printJson } from '../../bundle/report.js'
import { PHASES, VERIFY_SUMMARY } from '../phases/index.js'

/** `./install phases`: the phases, in the order they run (with --json, as a list). */
export function phasesCommand(flags: { json?: boolean }, io: Io): void {
  const phases = [{ name: 'verify', summary: VERIFY_SUMMARY }, ...PHASES.map((p) => ({ name: p.name, summary: p.summary }))]
  if (flags.json) printJson(io, { ok: true, phases })
  else for (const p of phases) io.out(`${p.name.padEnd(12)} ${p.summary}\n`)
}
