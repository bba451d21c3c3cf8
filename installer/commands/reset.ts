import { createInterface } from 'node:readline/promises'
import { KaError } from '../../bundle/errors.js'
import type { Io } from '../../bundle/report.js'
import { type Flags, requireSuperuser, resolveContext } from '../context.js'
import { resetPhase } from '../phases/reset.js'
import { runPhases } from '../plan.js'

/** `./install reset [--purge] [--yes]`: undo the cluster on this node, asking first on a terminal. */
export async function resetCommand(flags: Flags & { purge?: boolean; yes?: boolean }, io: Io): Promise<void> {
  requireSuperuser(flags, `reset${flags.purge ? ' --purge' : ''}${flags.yes ? ' --yes' : ''}`)
  const { ctx } = await resolveContext(flags, {
    role: 'worker',
    needAddress: false,
    record: true,
    phases: ['reset'],
    say: (l) => io.err(`${l}\n`),
    log: 'reset',
  })
  const dryRun = ctx.options.dryRun
  const phase = resetPhase(!!flags.purge)
  if (!flags.yes && !dryRun) {
    const steps = await phase.plan(ctx)
    if (steps.every((s) => s.done)) return void io.out('ok: nothing to reset\n')
    if (!process.stdin.isTTY)
      throw new KaError('EUSAGE', 'reset changes the node and there is no terminal to ask on: run it with --yes (or --dry-run to see what it would do)')
    // Every step it runs, in order: those with nothing to do now are said so, not left out.
    io.out(`./install reset will run:\n${steps.map((s) => `  ${s.title}${s.done ? '  (nothing to do now)' : ''}\n`).join('')}`)
    const rl = createInterface({ input: process.stdin, output: process.stdout })
    const answer = await rl.question('Go ahead? [y/N] ')
    rl.close()
    if (!/^y(es)?$/i.test(answer.trim())) return void io.out('nothing was changed\n')
  }
  const reports = await runPhases(ctx, [phase], (r) => io.out(`[reset] ${r.status.padEnd(12)} ${r.title}\n`))
  io.out(dryRun ? 'dry run: nothing was changed\n' : `ok: ${reports.filter((r) => r.status === 'done').length} steps changed the node\n`)
}
