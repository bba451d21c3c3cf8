import { printJson, type Io } from '../../bundle/report.js'
import { resolveContext, type Flags } from '../context.js'
import { doctor } from '../doctor.js'

/** `./install doctor`: read-only checks of the node; exit 1 when one fails. */
export async function doctorCommand(flags: Flags, io: Io): Promise<number> {
  const { ctx } = await resolveContext(
    { ...flags, dryRun: false },
    { role: 'worker', needAddress: false, record: false, phases: [], say: (l) => io.err(`${l}\n`) },
  )
  if (ctx.facts.euid !== 0 && flags.root === '/')
    io.err(
      "note  not run as root: what only root may read (the cluster's certificates and kubeconfigs, containerd's socket) is reported as not there; sudo ./install doctor checks everything\n",
    )
  const findings = await doctor(ctx)
  const fails = findings.filter((f) => f.level === 'fail').length
  if (flags.json) printJson(io, { ok: fails === 0, findings })
  else {
    const w = Math.max(...findings.map((f) => f.check.length))
    for (const f of findings)
      io.out(`${f.level.toUpperCase().padEnd(4)}  ${f.check.padEnd(w)}  ${f.found}${f.fix ? `\n${' '.repeat(w + 8)}fix: ${f.fix}` : ''}\n`)
    const todo = findings.filter((f) => f.level === 'todo').length
    const tail = todo ? `; ${todo} thing${todo > 1 ? 's' : ''} not installed yet (TODO: ./install does them)` : ''
    io.out(`${fails ? `${fails} problem${fails > 1 ? 's' : ''} found` : 'no problems found'}${tail}\n`)
  }
  return fails ? 1 : 0
}
