import { BIN_DIR, KUBELET_DROPIN, KUBELET_UNIT } from '../node-paths.js'
import { C } from '../../bundle/components.js'
import { type Context, fileStep, type Phase, type Step } from '../plan.js'
import { copyStep, unitState } from '../steps.js'
import { kubeletDropIn, kubeletUnit } from '../templates.js'

export const kubernetes: Phase = {
  name: 'kubernetes',
  summary: `kubeadm, kubelet and kubectl into ${BIN_DIR}; the kubelet unit and kubeadm drop-in; kubelet enabled (kubeadm starts it)`,
  async plan(ctx) {
    const steps: Step[] = []
    for (const name of [C.kubeadm, C.kubelet, C.kubectl]) steps.push(await copyStep(ctx, `${name} (${BIN_DIR}/${name})`, `${BIN_DIR}/${name}`, name, 0o755))
    return [...steps, ...(await kubeletUnitSteps(ctx))]
  },
}

/** The kubelet unit and kubeadm's drop-in as the bundle has them, systemd told, the kubelet enabled. */
export async function kubeletUnitSteps(ctx: Context): Promise<Step[]> {
  const steps: Step[] = []
  {
    const unit = await fileStep(ctx, `kubelet unit (${KUBELET_UNIT})`, KUBELET_UNIT, kubeletUnit())
    const dropIn = await fileStep(ctx, `kubeadm drop-in for kubelet (${KUBELET_DROPIN})`, KUBELET_DROPIN, kubeletDropIn())
    steps.push(unit, dropIn)
    steps.push({ title: 'systemd knows the kubelet unit', done: unit.done && dropIn.done, actions: [{ kind: 'run', argv: ['systemctl', 'daemon-reload'] }] })
    const state = await unitState(ctx, 'kubelet')
    steps.push({ title: 'kubelet enabled', done: state.enabled, actions: [{ kind: 'run', argv: ['systemctl', 'enable', 'kubelet'] }] })
  }
  return steps
}
