import yaml from 'js-yaml'
import { C } from '../../bundle/components.js'
import { KaError } from '../../bundle/errors.js'
import { cniOf } from '../../bundle/lock.js'
import { patchCalico } from '../calico.js'
import { admin } from '../cluster-state.js'
import { patchFlannel } from '../flannel.js'
import { CALICO_APPLIED, COREDNS_APPLIED, FLANNEL_APPLIED, KUBECTL_CALICO } from '../node-paths.js'
import { nameservers } from '../node-state.js'
import { fileStep, type Context, type Phase, type Step } from '../plan.js'
import { copyStep } from '../steps.js'
import { isFirstMaster } from './cluster.js'

export const network: Phase = {
  name: 'network',
  summary:
    'the pod network on the first master: Calico (pool CIDR = pod subnet, IP autodetection, calicoctl as kubectl-calico) or Flannel (network = pod subnet), as the bundle carries; its manifest patched to never pull and applied server-side',
  async plan(ctx) {
    const flannel = cniOf(ctx.bundle.lock) === 'flannel'
    const steps: Step[] = flannel ? [] : [await copyStep(ctx, `calicoctl as ${KUBECTL_CALICO} (kubectl calico ...)`, KUBECTL_CALICO, C.calicoctl, 0o755)]
    if (!isFirstMaster(ctx)) return steps
    const { podSubnet } = ctx.cluster.config
    const source = ctx.bundle.manifest(flannel ? C.flannelManifest : C.calicoManifest)
    if (source === undefined)
      throw new KaError('EVERIFY', `this bundle carries no ${flannel ? C.flannelManifest : C.calicoManifest}; build it from a lock that pins it`)
    // Calico's default (first-found) can pick the wrong interface on a multi-NIC node: by
    // default every node takes the interface that reaches the first master's address.
    const [name, path, patched, workload] = flannel
      ? (['Flannel', FLANNEL_APPLIED, patchFlannel(source, podSubnet), ['-n', 'kube-flannel', 'get', 'daemonset', 'kube-flannel-ds']] as const)
      : ([
          'Calico',
          CALICO_APPLIED,
          patchCalico(source, podSubnet, ctx.cluster.config.calicoAutodetection ?? `can-reach=${ctx.cluster.advertise}`),
          ['get', 'daemonset', 'calico-node', '-n', 'kube-system'],
        ] as const)
    const file = await fileStep(
      ctx,
      `${name} manifest (${path}: ${patched.documents} documents, ${flannel ? 'network' : 'pool'} ${podSubnet})`,
      path,
      patched.text,
    )
    steps.push(file)
    const applied = file.done && (await ctx.host.run(admin(ctx, ...workload), { changing: false })).code === 0
    // Server-side apply: a rerun is harmless, and Calico's large CRDs do not hit the
    // client-side last-applied annotation limit ("metadata.annotations: Too long").
    steps.push({
      title: `${name} applied (kubectl apply --server-side)`,
      done: applied,
      actions: [{ kind: 'run', argv: admin(ctx, 'apply', '--server-side', '--force-conflicts', '-f', ctx.host.path(path)) }],
    })
    steps.push(...(await localCoreDnsSteps(ctx)))
    return steps
  },
}

/**
 * An air-gapped master often has no resolver at all; CoreDNS then crash-loops ("plugin/
 * forward: no nameservers found"). Then CoreDNS is set up without upstream forwarding:
 * cluster names resolve, names outside the cluster do not (there is nothing to ask).
 */
async function localCoreDnsSteps(ctx: Context): Promise<Step[]> {
  const resolver = await nameservers(ctx.host)
  if (resolver.servers.length > 0) return []
  const got = await ctx.host.run(admin(ctx, '-n', 'kube-system', 'get', 'configmap', 'coredns', '-o', 'jsonpath={.data.Corefile}'), { changing: false })
  if (got.code !== 0 || !got.stdout.includes('forward')) return []
  ctx.say(
    `note  ${resolver.file} (what the kubelet hands CoreDNS) names no nameserver: CoreDNS is set up without upstream forwarding (cluster names resolve, outside names do not); add a nameserver and restore the forward line to change that`,
  )
  const local = withoutForward(got.stdout)
  const manifest = yaml.dump(
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'coredns', namespace: 'kube-system' }, data: { Corefile: local } },
    { lineWidth: -1 },
  )
  const file = await fileStep(ctx, `CoreDNS without upstream forwarding (${COREDNS_APPLIED})`, COREDNS_APPLIED, manifest)
  return [
    file,
    {
      title: 'CoreDNS restarted on its local Corefile',
      done: got.stdout === local,
      actions: [
        { kind: 'run', argv: admin(ctx, 'apply', '--server-side', '--force-conflicts', '-f', ctx.host.path(COREDNS_APPLIED)) },
        { kind: 'run', argv: admin(ctx, '-n', 'kube-system', 'rollout', 'restart', 'deployment', 'coredns') },
      ],
    },
  ]
}

/** A Corefile without its `forward` plugin (the one-line and the block form). */
export function withoutForward(corefile: string): string {
  return corefile.replace(/^[ \t]*forward\b[^\n{]*\{[^}]*\}[ \t]*\n|^[ \t]*forward\b[^\n]*\n/gm, '')
}
