import type { Io } from '../../bundle/report.js'
import { printJson } from '../../bundle/report.js'
import { type Flags, requireSuperuser, resolveContext } from '../context.js'
import { controller } from '../phases/controller.js'
import { reporter } from './install.js'

/** `./install controller`: verify, then the packages the fleet playbook's controller needs. */
export async function controllerCommand(flags: Flags, io: Io): Promise<void> {
  requireSuperuser(flags, 'controller')
  const out = reporter(io, flags)
  const { ctx, report, record } = await resolveContext(flags, {
    role: 'worker',
    needAddress: false,
    record: true,
    phases: [controller.name],
    say: out.say,
    log: 'controller',
  })
  await out.run(ctx, [controller], report, record)
  const dryRun = ctx.options.dryRun
  if (flags.json) return printJson(io, { ok: true, dryRun, steps: out.reports, warnings: out.warnings, ...(ctx.log ? { log: ctx.log.path } : {}) })
  io.out(out.summary(dryRun))
  if (!dryRun)
    io.out(
      'next: write the inventory and run the playbook from this folder:\n  ./install inventory > ~/inventory.yml   # then edit it\n  ansible-playbook -i ~/inventory.yml ansible/site.yml -e kube_airgap_bundle=/media/usb/NAME.tar --check\n',
    )
}
