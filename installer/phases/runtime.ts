import { BIN_DIR, CNI_BIN_DIR, CONTAINERD_CONFIG, CONTAINERD_UNIT, CRICTL_CONFIG, KUBELET_DROPIN, KUBELET_UNIT, RUNC } from '../paths.js'
import { fileStep, type Phase, type Step } from '../plan.js'
import { copyStep, membersStep, unitState } from '../steps.js'
import { containerdConfig, crictlConfig, kubeletDropIn, kubeletUnit } from '../templates.js'

const locked = (ctx: Parameters<Phase['plan']>[0], name: string) => {
  const f = ctx.bundle.file(name)
  return { path: f.path, sha256: f.locked.integrity, ...(f.locked.size !== undefined ? { size: f.locked.size } : {}) }
}

export const containerd: Phase = {
  name: 'containerd',
  summary: `runc to ${RUNC}, containerd to ${BIN_DIR}, its unit and ${CONTAINERD_CONFIG} (systemd cgroups, the bundle's pause image), crictl and ${CRICTL_CONFIG}; started`,
  async plan(ctx) {
    const binaries = await membersStep(ctx, `containerd binaries in ${BIN_DIR}`, 'containerd', BIN_DIR, (p) => p.startsWith('bin/'))
    const runc = await copyStep(ctx, `runc (${RUNC})`, RUNC, locked(ctx, 'runc'), 0o755)
    const unit = await copyStep(ctx, `containerd unit (${CONTAINERD_UNIT})`, CONTAINERD_UNIT, locked(ctx, 'containerd-service'), 0o644)
    const config = await fileStep(ctx, `containerd config (${CONTAINERD_CONFIG}, sandbox_image ${ctx.bundle.required.pause})`, CONTAINERD_CONFIG, containerdConfig(ctx.bundle.required.pause))
    const crictl = await membersStep(ctx, `crictl in ${BIN_DIR}`, 'crictl', BIN_DIR)
    const crictlYaml = await fileStep(ctx, `crictl config (${CRICTL_CONFIG})`, CRICTL_CONFIG, crictlConfig())
    const steps: Step[] = [binaries, runc, unit, config, crictl, crictlYaml]

    const state = await unitState(ctx, 'containerd')
    const changed = [binaries, runc, unit, config].some((s) => !s.done)
    steps.push({ title: 'systemd knows the containerd unit', done: unit.done, actions: [{ kind: 'run', argv: ['systemctl', 'daemon-reload'] }] })
    steps.push({ title: 'containerd enabled and running', done: state.enabled && state.active, actions: [{ kind: 'run', argv: ['systemctl', 'enable', '--now', 'containerd'] }] })
    // A running containerd keeps its old binary and config until restarted.
    steps.push({ title: 'containerd runs the installed binary and config', done: !(changed && state.active), actions: [{ kind: 'run', argv: ['systemctl', 'restart', 'containerd'] }] })
    return steps
  },
}

export const cni: Phase = {
  name: 'cni',
  summary: `the CNI plugins into ${CNI_BIN_DIR}`,
  async plan(ctx) {
    return [await membersStep(ctx, `CNI plugins in ${CNI_BIN_DIR}`, 'cni-plugins', CNI_BIN_DIR)]
  },
}

export const kubernetes: Phase = {
  name: 'kubernetes',
  summary: `kubeadm, kubelet and kubectl into ${BIN_DIR}; the kubelet unit and kubeadm drop-in; kubelet enabled (kubeadm starts it)`,
  async plan(ctx) {
    const steps: Step[] = []
    for (const name of ['kubeadm', 'kubelet', 'kubectl']) steps.push(await copyStep(ctx, `${name} (${BIN_DIR}/${name})`, `${BIN_DIR}/${name}`, locked(ctx, name), 0o755))
    const unit = await fileStep(ctx, `kubelet unit (${KUBELET_UNIT})`, KUBELET_UNIT, kubeletUnit())
    const dropIn = await fileStep(ctx, `kubeadm drop-in for kubelet (${KUBELET_DROPIN})`, KUBELET_DROPIN, kubeletDropIn())
    steps.push(unit, dropIn)
    steps.push({ title: 'systemd knows the kubelet unit', done: unit.done && dropIn.done, actions: [{ kind: 'run', argv: ['systemctl', 'daemon-reload'] }] })
    const state = await unitState(ctx, 'kubelet')
    steps.push({ title: 'kubelet enabled', done: state.enabled, actions: [{ kind: 'run', argv: ['systemctl', 'enable', 'kubelet'] }] })
    return steps
  },
}
