import type { Io } from '../../bundle/report.js'
import { type Flags, requireSuperuser, resolveContext } from '../context.js'
import { joinFileSteps, newJoinToken } from '../phases/cluster.js'
import { perform } from '../plan.js'

/** `./install join-command`, on the first master: a fresh token and certificate key, join/*.yaml rewritten. */
export async function joinCommand(flags: Flags, io: Io): Promise<void> {
  requireSuperuser(flags, 'join-command')
  const { ctx } = await resolveContext(
    { ...flags, role: 'master' },
    { role: 'master', needAddress: false, record: true, phases: [], say: (l) => io.err(`${l}\n`), log: 'join-command' },
  )
  if (ctx.options.dryRun)
    return void io.out(
      'dry run: join-command would make a fresh token and certificate key and rewrite join/worker.yaml and join/control-plane.yaml; nothing was changed\n',
    )
  const state = await newJoinToken(ctx)
  for (const step of await joinFileSteps(ctx, state)) for (const a of step.actions) await perform(step.on ?? ctx.host, a)
  io.out(`ok: join/worker.yaml and join/control-plane.yaml rewritten (token expires ${state.expires}, certificate key ${state.certificateKeyExpires})\n`)
}
