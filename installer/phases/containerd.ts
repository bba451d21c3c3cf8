import { BIN_DIR, CONTAINERD_CONFIG, CONTAINERD_UNIT, CRICTL_CONFIG, RUNC } from '../node-paths.js'
import { C } from '../../bundle/components.js'
import { fileStep, type Phase, type Step } from '../plan.js'
import { copyStep, membersStep, unitState } from '../steps.js'
import { containerdConfig, crictlConfig } from '../templates.js'
import { relabelStep, selinuxKept } from '../security.js'

export const containerd: Phase = {
  name: 'containerd',
  summary: `runc to ${RUNC}, containerd to ${BIN_DIR}, its unit and ${CONTAINERD_CONFIG} (systemd cgroups, the bundle's pause image), crictl and ${CRICTL_CONFIG}; started`,
  async plan(ctx) {
    const binaries = await membersStep(ctx, `containerd binaries in ${BIN_DIR}`, C.containerd, BIN_DIR)
    const runc = await copyStep(ctx, `runc (${RUNC})`, RUNC, C.runc, 0o755)
    const unit = await copyStep(ctx, `containerd unit (${CONTAINERD_UNIT})`, CONTAINERD_UNIT, C.containerdService, 0o644)
    const selinux = await selinuxKept(ctx)
    const config = await fileStep(
      ctx,
      `containerd config (${CONTAINERD_CONFIG}, sandbox image ${ctx.bundle.required.pause}${selinux ? ', enable_selinux' : ''})`,
      CONTAINERD_CONFIG,
      containerdConfig(ctx.bundle.required.pause, selinux, ctx.bundle.file(C.containerd).locked.version),
    )
    const crictl = await membersStep(ctx, `crictl in ${BIN_DIR}`, C.crictl, BIN_DIR)
    const crictlYaml = await fileStep(ctx, `crictl config (${CRICTL_CONFIG})`, CRICTL_CONFIG, crictlConfig())
    const steps: Step[] = [binaries, runc, unit, config, crictl, crictlYaml]
    // Before containerd starts: it must start in its own SELinux domain.
    if (selinux)
      steps.push(
        await relabelStep(
          ctx,
          [BIN_DIR, RUNC],
          [binaries, runc, crictl].every((s) => s.done),
        ),
      )

    const state = await unitState(ctx, 'containerd')
    const changed = [binaries, runc, unit, config].some((s) => !s.done)
    steps.push({ title: 'systemd knows the containerd unit', done: unit.done, actions: [{ kind: 'run', argv: ['systemctl', 'daemon-reload'] }] })
    steps.push({
      title: 'containerd enabled and running',
      done: state.enabled && state.active,
      actions: [{ kind: 'run', argv: ['systemctl', 'enable', '--now', 'containerd'] }],
    })
    // A running containerd keeps its old binary and config until restarted. One that is not
    // running starts with them (above): no step, rather than one that claims it was checked.
    if (state.active) {
      steps.push({
        title: 'containerd runs the installed binary and config',
        done: !changed,
        actions: [{ kind: 'run', argv: ['systemctl', 'restart', 'containerd'] }],
      })
    }
    return steps
  },
}
