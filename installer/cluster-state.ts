import { BIN_DIR, KUBEADM_CONFIG, KUBECONFIG_ADMIN, KUBELET_KUBECONFIG } from './node-paths.js'
import type { Context, Step } from './plan.js'

/**
 * What the cluster itself says about this node, read with the first master's admin.conf
 * (or a node's own kubeconfig): how far kubeadm init got, whether a node is a control plane,
 * which nodes are Ready, which pods a drain would evict. The cluster phase judges "done" by
 * this, not by a file kubeadm writes early.
 */
/** The bundle's kubeadm, as the installer placed it. */
export const KUBEADM = `${BIN_DIR}/kubeadm`

/**
 * The annotation `./install upgrade --stage` puts on its own node: which bundle's images it
 * holds (stagedImagesId). A kubelet's credentials may annotate its own Node object; only
 * labels are restricted (plugin/pkg/admission/noderestriction/admission.go).
 */
export const STAGED_ANNOTATION = 'kube-airgap.io/staged-images'

/** kubectl with a kubeconfig on the node (the admin's by default). */
export const kubectl = (ctx: Context, kubeconfig: string, ...args: string[]) => [`${BIN_DIR}/kubectl`, '--kubeconfig', ctx.host.path(kubeconfig), ...args]
export const admin = (ctx: Context, ...args: string[]) => kubectl(ctx, KUBECONFIG_ADMIN, ...args)

/** Whether the cluster lists `name` as a control-plane node (kubeadm's mark-control-plane ran for it). */
export async function isControlPlane(ctx: Context, name: string): Promise<boolean> {
  const r = await ctx.host.run(admin(ctx, 'get', 'nodes', '-l', 'node-role.kubernetes.io/control-plane', '-o', 'name'), { changing: false })
  return r.code === 0 && r.stdout.split('\n').includes(`node/${name}`)
}

const exists = async (ctx: Context, ...what: string[]) => (await ctx.host.run(admin(ctx, 'get', ...what), { changing: false })).code === 0

/**
 * kubeadm init's phases after the control plane answers, in its order (cmd/kubeadm/app/cmd/init.go),
 * each with what it leaves behind. upload-certs leaves nothing lasting (kubeadm deletes the
 * secret after two hours): it goes with upload-config. Each phase creates or updates, so one
 * run again is harmless.
 */
const INIT_PHASES: { name: string; args: string[]; done?: (ctx: Context) => Promise<boolean> }[] = [
  { name: 'upload-config', args: ['upload-config', 'all'], done: (ctx) => exists(ctx, 'configmap', 'kubeadm-config', '-n', 'kube-system') },
  { name: 'upload-certs', args: ['upload-certs', '--upload-certs'] },
  { name: 'mark-control-plane', args: ['mark-control-plane'], done: (ctx) => isControlPlane(ctx, ctx.cluster.config.nodeName) },
  { name: 'bootstrap-token', args: ['bootstrap-token'], done: (ctx) => exists(ctx, 'configmap', 'cluster-info', '-n', 'kube-public') },
  {
    name: 'kubelet-finalize',
    args: ['kubelet-finalize', 'all'],
    done: async (ctx) => ((await ctx.host.readText(KUBELET_KUBECONFIG)) ?? '').includes('kubelet-client-current.pem'),
  },
  {
    name: 'addon',
    args: ['addon', 'all'],
    done: async (ctx) =>
      (await exists(ctx, 'daemonset', 'kube-proxy', '-n', 'kube-system')) && (await exists(ctx, 'deployment', 'coredns', '-n', 'kube-system')),
  },
]

/**
 * A first master that has admin.conf: kubeadm init got at least to its kubeconfig phase. With
 * the API server answering, the phases it did not reach run now, from the first one missing
 * on, with the same --config. A kubelet already finalized means init went all the way before:
 * done, whatever the API server says now. Undefined: it stopped before the control plane ever
 * answered, and only kubeadm reset -f and init again is safe (init refuses the files it left).
 */
export async function finishInit(ctx: Context): Promise<Step | undefined> {
  const done: Step = { title: 'cluster initialized (kubeadm init)', done: true, actions: [] }
  const answers = (await ctx.host.run(admin(ctx, 'get', '--raw', '/readyz', '--request-timeout=10s'), { changing: false })).code === 0
  if (!answers) return (await INIT_PHASES.find((p) => p.name === 'kubelet-finalize')!.done!(ctx)) ? done : undefined
  let from = -1
  for (const [i, p] of INIT_PHASES.entries())
    if (p.done && !(await p.done(ctx))) {
      from = i
      break
    }
  if (from < 0) return done
  const missing = INIT_PHASES.slice(from)
  return {
    title: `cluster initialized where kubeadm init stopped (kubeadm init phase ${missing.map((p) => p.name).join(', ')})`,
    done: false,
    actions: missing.map((p) => ({ kind: 'run', argv: [KUBEADM, 'init', 'phase', ...p.args, '--config', ctx.host.path(KUBEADM_CONFIG)] })),
  }
}

/** The names of the nodes the API lists as Ready (none when it does not answer). */
export async function readyNodes(ctx: Context): Promise<string[]> {
  const listed = await ctx.host.run(admin(ctx, 'get', 'nodes', '-o', 'json'), { changing: false })
  type Item = { metadata?: { name?: unknown }; status?: { conditions?: { type?: string; status?: string }[] } }
  let items: Item[] = []
  try {
    items = listed.code === 0 ? ((JSON.parse(listed.stdout) as { items?: Item[] }).items ?? []) : []
  } catch {
    items = []
  }
  return items
    .filter((i) => i.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
    .map((i) => i.metadata?.name)
    .filter((n): n is string => typeof n === 'string' && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(n))
}

/**
 * The pods `kubectl drain` would evict from a node, as its own kubeconfig may list them (a
 * kubelet may read the pods bound to it): all but DaemonSet pods, static (mirror) pods and
 * finished ones, as drain skips them (staging/src/k8s.io/kubectl/pkg/drain/filters.go).
 * Undefined when they cannot be listed.
 */
export async function podsToEvict(ctx: Context, kubeconfig: string, name: string): Promise<string[] | undefined> {
  const r = await ctx.host.run(kubectl(ctx, kubeconfig, 'get', 'pods', '-A', '--field-selector', `spec.nodeName=${name}`, '-o', 'json'), {
    changing: false,
  })
  type Pod = {
    metadata?: { name?: string; namespace?: string; annotations?: Record<string, string>; ownerReferences?: { kind?: string }[] }
    status?: { phase?: string }
  }
  let items: Pod[]
  try {
    items = (JSON.parse(r.stdout) as { items?: Pod[] }).items ?? []
  } catch {
    return undefined
  }
  if (r.code !== 0) return undefined
  return items
    .filter((p) => !p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet'))
    .filter((p) => !p.metadata?.annotations?.['kubernetes.io/config.mirror'])
    .filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
    .map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`)
}
