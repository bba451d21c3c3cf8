import { KaError } from '../../bundle/errors.js'
import { certExpiries } from '../certs.js'
import type { InstalledNode } from '../cluster-view.js'
import { KUBEADM } from '../cluster-state.js'
import { BIN_DIR, KUBELET_CONFIG, RESTART_DIR, STATIC_PODS } from '../node-paths.js'
import { type Context, type Phase, type Step, writeAction } from '../plan.js'
import { poll } from '../poll.js'
import { adminKubeconfigSteps } from './cluster.js'

/**
 * The control plane's static pods, in the order they are restarted after a renewal: etcd
 * first (its new server and peer certificates), then the API server (its new serving and
 * etcd-client certificates, against the restarted etcd), then the two that talk to it.
 * kubeadm's documented way: the manifest taken out of the kubelet's folder until the pod is
 * gone, then put back (kubernetes.io, Certificate Management with kubeadm).
 */
const CONTROL_PLANE = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler']

/** `./install certs renew`: on a master, kubeadm's certificates renewed and loaded; on a worker, the kubelet's rotation checked. */
export function certsRenewPhase(node: InstalledNode): Phase {
  return {
    name: 'certs',
    summary:
      "on a master: kubeadm certs renew all, then etcd, the API server, the controller manager and the scheduler restarted one at a time to load them, and root's (and the sudo user's) admin kubeconfig refreshed; on a worker: the kubelet's certificate rotation checked",
    async plan(ctx) {
      if (!(await ctx.host.exists(`${STATIC_PODS}/kube-apiserver.yaml`))) return [await kubeletRotation(ctx, node)]
      const certs = (await certExpiries(ctx)).filter((c) => c.renewedBy === 'kubeadm')
      const soonest = certs.reduce<(typeof certs)[number] | undefined>((a, b) => (a && a.days <= b.days ? a : b), undefined)
      const steps: Step[] = [
        {
          title: `kubeadm certs renew all (${certs.length} certificates${soonest ? `; the soonest, ${soonest.name}, expired or expiring in ${soonest.days} days` : ''})`,
          done: false,
          actions: [{ kind: 'run', argv: [KUBEADM, 'certs', 'renew', 'all'] }],
        },
      ]
      for (const pod of CONTROL_PLANE) {
        const manifest = await ctx.host.read(`${STATIC_PODS}/${pod}.yaml`)
        if (manifest) steps.push(...restartSteps(ctx, pod, manifest))
      }
      return steps
    },
  }
}

/**
 * Then root's and the sudo user's copies of admin.conf, which kubeadm certs renew rewrote:
 * planned after the renewal ran (a phase is planned when it starts); in a dry run, as steps
 * that would be done, since the renewal would change admin.conf first.
 */
export const adminRefreshPhase: Phase = {
  name: 'certs',
  summary: "root's and the sudo user's admin kubeconfig refreshed from the renewed admin.conf",
  async plan(ctx) {
    if (!(await ctx.host.exists(`${STATIC_PODS}/kube-apiserver.yaml`))) return []
    return (await adminKubeconfigSteps(ctx)).map((s) => ({ ...s, done: s.done && !ctx.options.dryRun }))
  },
}

/** A static pod stopped by the kubelet (its manifest taken out), then started again (put back): it reads its certificates anew. */
function restartSteps(ctx: Context, pod: string, manifest: Buffer): Step[] {
  return [stopPodStep(ctx, pod, manifest), startPodStep(ctx, pod, manifest, 'with the renewed certificates')]
}

/** A static pod stopped: its manifest kept in RESTART_DIR and taken out of the kubelet's folder, until the kubelet has stopped it. */
export function stopPodStep(ctx: Context, pod: string, manifest: Buffer): Step {
  const path = `${STATIC_PODS}/${pod}.yaml`
  return {
    title: `${pod} stopped by the kubelet (its manifest kept in ${RESTART_DIR} meanwhile)`,
    done: false,
    actions: [writeAction(`${RESTART_DIR}/${pod}.yaml`, manifest, 0o600), { kind: 'remove', path }],
    check: () => waitPod(ctx, pod, false),
  }
}

/** A static pod started again: its manifest put back, until the kubelet runs it. */
export function startPodStep(ctx: Context, pod: string, manifest: Buffer, how: string): Step {
  return {
    title: `${pod} started again ${how}`,
    done: false,
    actions: [writeAction(`${STATIC_PODS}/${pod}.yaml`, manifest, 0o600), { kind: 'remove', path: `${RESTART_DIR}/${pod}.yaml` }],
    check: () => waitPod(ctx, pod, true),
  }
}

/** Polls the container runtime (crictl, as the kubelet sees it) until `pod` runs, or runs no more. */
async function waitPod(ctx: Context, pod: string, running: boolean): Promise<void> {
  const crictl = [`${BIN_DIR}/crictl`, '--runtime-endpoint', `unix://${ctx.options.containerdAddress}`]
  await poll(
    ctx,
    1000,
    async () => {
      const r = await ctx.host.run([...crictl, 'ps', '--name', `^${pod}$`, '--state', 'running', '-q'], { changing: false })
      const up = r.code === 0 && r.stdout.trim() !== ''
      return up === running ? undefined : `${pod} ${running ? 'not running yet' : 'still running'}`
    },
    (last, s) =>
      `${last} after ${s} s: the kubelet ${running ? 'did not start it again' : 'did not stop it'}; look at journalctl -u kubelet and crictl ps -a${running ? '' : `; its manifest is kept in ${RESTART_DIR}`}`,
  )
}

/** A worker: nothing of kubeadm's to renew; the kubelet rotates its client certificate if rotateCertificates is on. */
async function kubeletRotation(ctx: Context, node: InstalledNode): Promise<Step> {
  const config = (await ctx.host.readText(KUBELET_CONFIG)) ?? ''
  const client = (await certExpiries(ctx)).find((c) => c.name === 'kubelet client')
  return {
    title: `${node.name}: no kubeadm certificates here; the kubelet rotates its client certificate${client ? ` (now valid for ${client.days} more days)` : ''}`,
    done: true,
    checkOnly: true,
    actions: [],
    check: async () => {
      if (!/^rotateCertificates: true$/m.test(config))
        throw new KaError(
          'ESTEP',
          `${KUBELET_CONFIG} does not say rotateCertificates: true: the kubelet's client certificate will expire with no renewal; add it and restart the kubelet (systemctl restart kubelet)`,
        )
      if (client && client.days < 0)
        throw new KaError(
          'ESTEP',
          `the kubelet's client certificate expired ${-client.days} days ago: rotation cannot renew it now; join the node again (./install reset, then a fresh join file)`,
        )
    },
  }
}
