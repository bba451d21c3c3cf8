import { ADDONS, MANIFESTS, type Addon } from '../../bundle/components.js'
import { addonsOn, choicesText, imagePins, patchAddon, readyReplicas, type Patched } from '../addons.js'
import { admin } from '../cluster-state.js'
import { ADDON_CHOICES, addonApplied } from '../node-paths.js'
import { fileStep, type Context, type Phase, type Step } from '../plan.js'
import { poll } from '../poll.js'
import { isFirstMaster } from './cluster.js'

/** Each add-on this cluster runs, as the first master applies it: its patched manifest and what it is called. */
export function addonManifests(ctx: Context): { addon: Addon; patched: Patched }[] {
  const pins = imagePins(ctx.bundle.lock.images)
  return addonsOn((a) => ctx.bundle.manifest(a) !== undefined, ctx.cluster.config.addons).map((addon) => ({
    addon,
    patched: patchAddon(addon, ctx.bundle.manifest(addon)!, pins, ctx.cluster.config.addons),
  }))
}

/** Whether a node can run the add-ons' pods: Ready, schedulable, and without a NoSchedule or NoExecute taint. */
async function schedulableNode(ctx: Context): Promise<boolean> {
  const r = await ctx.host.run(admin(ctx, 'get', 'nodes', '-o', 'json'), { changing: false })
  type Node = { spec?: { unschedulable?: boolean; taints?: { effect?: string }[] }; status?: { conditions?: { type?: string; status?: string }[] } }
  try {
    const items = r.code === 0 ? ((JSON.parse(r.stdout) as { items?: Node[] }).items ?? []) : []
    return items.some(
      (n) =>
        !n.spec?.unschedulable &&
        !(n.spec?.taints ?? []).some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute') &&
        n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    )
  } catch {
    return false
  }
}

/**
 * The add-ons, on the first master once the node is Ready (after Calico, and after `finish`
 * waited for kube-system): each manifest patched for the air gap and this cluster, applied
 * server-side with the bundle's kubectl, then waited for until its Deployment has a ready
 * replica. Without a node that may run them (one master, tainted, no worker yet) the wait is
 * left to doctor, which says so. A rerun changes nothing.
 */
export const addons: Phase = {
  name: 'addons',
  summary:
    'on the first master: the add-ons the bundle carries (local-path-provisioner, metrics-server, ingress-nginx), unless cluster.yaml turns them off: images pinned by digest, applied server-side, waited for until they run',
  async plan(ctx) {
    if (!isFirstMaster(ctx) || !ADDONS.some((a) => ctx.bundle.manifest(a) !== undefined)) return []
    const steps: Step[] = [await fileStep(ctx, `add-on choices kept for upgrades (${ADDON_CHOICES})`, ADDON_CHOICES, choicesText(ctx.cluster.config.addons))]
    const all = addonManifests(ctx)
    for (const { addon, patched } of all) {
      const path = addonApplied(addon)
      const file = await fileStep(ctx, `${addon} manifest (${path}: ${patched.documents} documents, from ${MANIFESTS[addon]})`, path, patched.text)
      steps.push(file)
      const w = patched.workload
      const exists = w && (await ctx.host.run(admin(ctx, '-n', w.namespace, 'get', 'deployment', w.name), { changing: false })).code === 0
      steps.push({
        title: `${addon} applied (kubectl apply --server-side)`,
        done: file.done && !!exists,
        actions: [{ kind: 'run', argv: admin(ctx, 'apply', '--server-side', '--force-conflicts', '-f', ctx.host.path(path)) }],
      })
    }
    const workloads = all.filter((a) => a.patched.workload)
    if (workloads.length)
      steps.push({
        title: `add-ons running (${workloads.map((a) => a.addon).join(', ')})`,
        done: true,
        checkOnly: true,
        actions: [],
        check: async () => {
          if (!(await schedulableNode(ctx))) {
            ctx.say(
              `note  no node may run the add-ons yet (every node is tainted NoSchedule or not Ready): they start once a worker joins; ./install doctor reports them`,
            )
            return
          }
          await poll(
            ctx,
            2000,
            async () => {
              const waiting: string[] = []
              for (const { addon, patched } of workloads) if (!Number(await readyReplicas(ctx, patched.workload!))) waiting.push(addon)
              return waiting.length ? `add-ons not ready: ${waiting.join(', ')}` : undefined
            },
            (last, s) =>
              `${last} after ${s} s; look at their pods: \`kubectl get pods -A -o wide\`, then \`kubectl describe pod <name> -n <namespace>\` (an image missing shows as ErrImageNeverPull or ImagePullBackOff: run ./install images with a bundle that carries it); run ./install again once fixed`,
          )
        },
      })
    return steps
  },
}
