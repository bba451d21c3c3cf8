import { KaError } from '../../bundle/errors.js'
import { clusterView, type InstalledNode } from '../cluster-view.js'
import { BIN_DIR } from '../node-paths.js'
import type { Context, Phase, Step } from '../plan.js'

/**
 * The etcd client the control plane's own etcd image carries, run in this master's etcd pod:
 * the same version as the cluster's etcd, with the client certificate kubeadm made for health
 * checks (etcd's member API needs no more), and nothing to carry in the bundle.
 */
const etcdctl = (kubectl: string[], me: string, ...args: string[]) => [
  ...kubectl,
  '-n',
  'kube-system',
  'exec',
  `etcd-${me}`,
  '--',
  'etcdctl',
  '--endpoints=https://127.0.0.1:2379',
  '--cacert=/etc/kubernetes/pki/etcd/ca.crt',
  '--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt',
  '--key=/etc/kubernetes/pki/etcd/healthcheck-client.key',
  ...args,
]

/** `etcdctl member list -w simple`: "ID, status, name, peer URLs, client URLs, is learner" per member. */
export const etcdMembers = (text: string): { id: string; name: string }[] =>
  text
    .split('\n')
    .map((l) => l.split(',').map((f) => f.trim()))
    .filter((f) => /^[0-9a-f]+$/.test(f[0] ?? '') && f[2])
    .map((f) => ({ id: f[0]!, name: f[2]! }))

/** The pods a drain could not evict, as kubectl names them (`evicting pod default/web-1`, `pods/"web-1" -n "default"`). */
export const blockingPods = (stderr: string): string[] => [
  ...new Set([
    ...[...stderr.matchAll(/pods\/"([^"]+)" -n "([^"]+)"/g)].map((m) => `${m[2]}/${m[1]}`),
    ...[...stderr.matchAll(/evicting pod ([\w.-]+\/[\w.-]+)/g)].map((m) => m[1]!),
  ]),
]

/**
 * `./install remove-node NAME` on a master: cordoned, drained (at most --wait-timeout), its
 * etcd member removed when it is a control plane, the Node deleted. The node itself is then
 * reset with `./install reset --purge` there.
 */
export function removeNodePhase(node: InstalledNode, name: string): Phase {
  return {
    name: 'remove-node',
    summary: 'cordon, drain, the etcd member removed for a control plane, the Node deleted',
    async plan(ctx) {
      if (node.kind === 'worker') throw new KaError('EUSAGE', `remove-node runs on a master (this node, ${node.name}, is a worker): run it on a master`)
      if (name === node.name) throw new KaError('EUSAGE', `${name} is this node: run remove-node on another master, then ./install reset --purge here`)
      const view = await clusterView(ctx, node.kubeconfig)
      const target = view.nodes.find((n) => n.name === name)
      if (!target)
        throw new KaError(
          'EUSAGE',
          `the cluster has no node ${JSON.stringify(name)}; its nodes: ${view.nodes.map((n) => n.name).join(', ')} (kubectl get nodes)`,
        )
      const kubectl = [`${BIN_DIR}/kubectl`, '--kubeconfig', ctx.host.path(node.kubeconfig)]
      const timeout = `${Math.round(ctx.cluster.waitMs / 1000)}s`
      const steps: Step[] = [
        { title: `node ${name} cordoned`, done: target.unschedulable, actions: [{ kind: 'run', argv: [...kubectl, 'cordon', name] }] },
        {
          title: `node ${name} drained (kubectl drain, at most ${timeout})`,
          done: false,
          actions: [
            {
              kind: 'run',
              argv: [...kubectl, 'drain', name, '--ignore-daemonsets', '--delete-emptydir-data', `--timeout=${timeout}`],
              failure: (output) => {
                const pods = blockingPods(output)
                return `node ${name} was not drained within ${timeout}${pods.length ? `: ${pods.join(', ')} would not leave (a PodDisruptionBudget, or a pod with local storage?)` : `: ${output.trim().split('\n').pop()}`}; nothing more was changed (it stays cordoned: kubectl uncordon ${name} to undo); free them, or give --wait-timeout, and run again`
              },
            },
          ],
        },
      ]
      if (target.controlPlane) steps.push(await etcdStep(ctx, kubectl, node.name, name))
      steps.push({ title: `node ${name} deleted from the cluster`, done: false, actions: [{ kind: 'run', argv: [...kubectl, 'delete', 'node', name] }] })
      return steps
    },
  }
}

/** A control plane's etcd member removed, through this master's etcd (its member API): quorum shrinks with it. */
async function etcdStep(ctx: Context, kubectl: string[], me: string, name: string): Promise<Step> {
  const list = await ctx.host.run(etcdctl(kubectl, me, 'member', 'list', '-w', 'simple'), { changing: false })
  if (list.code !== 0)
    throw new KaError(
      'ESTEP',
      `cannot list etcd's members through etcd-${me}: ${list.stderr.trim().split('\n').pop()}; is etcd running here (crictl ps --name etcd)?`,
    )
  const members = etcdMembers(list.stdout)
  const member = members.find((m) => m.name === name)
  return {
    title: member ? `etcd member ${name} (${member.id}) removed; ${members.length - 1} left` : `etcd has no member ${name} (removed before)`,
    done: !member,
    actions: member ? [{ kind: 'run', argv: etcdctl(kubectl, me, 'member', 'remove', member.id) }] : [],
  }
}
