import { KaError } from '../../bundle/errors.js'
import { localEndpoint, nodeProxyConfig, proxyUnit } from '../apiserver-proxy.js'
import type { ClusterConfig } from '../cluster-config.js'
import {
  APISERVER_PROXY,
  APISERVER_PROXY_CONFIG,
  APISERVER_PROXY_UNIT,
  HAPROXY,
  KEEPALIVED,
  VIP_CHECK,
  VIP_CONFIG,
  VIP_UNIT,
  VIP_UNIT_NAME,
} from '../node-paths.js'
import { type Context, fileStep, type Phase, type Step } from '../plan.js'
import { unitState } from '../steps.js'
import { interfaceOf, keepalivedConfig, vipCheck, vipUnit } from '../vip.js'

/**
 * The control-plane endpoint the bundle provides (docs/ha.md), running before kubeadm init or
 * join needs it: the local endpoint (HAProxy on 127.0.0.1:7443 of every node to every master),
 * or the virtual IP the masters hold (keepalived on each master). Both programs come from the
 * bundle's OS packages. Without either (one master, or the operator's own load balancer)
 * there is nothing to do.
 */
export const endpoint: Phase = {
  name: 'endpoint',
  summary: `the endpoint the bundle provides: with endpoint: local, HAProxy on ${localEndpoint()} of every node to every master's API server (health-checked); with endpoint: { vip }, keepalived on every master holding the virtual IP; started before kubeadm`,
  async plan(ctx) {
    const { localEndpoint: local, vip, controlPlaneEndpoint } = ctx.cluster.config
    if (local) return proxySteps(ctx, local.masters)
    if (vip && ctx.options.role === 'master') return vipSteps(ctx, vip)
    const title = vip
      ? `the virtual IP ${vip.address}: held by the masters`
      : `no endpoint to provide: the control plane is at ${controlPlaneEndpoint ?? "the first master's address"}`
    return [{ title, done: true, checkOnly: true, actions: [] }]
  },
}

/** The packages phase installs the program first, from the bundle's set for this release (a dry run plans that too). */
async function needs(ctx: Context, program: string, setting: string): Promise<void> {
  if (ctx.options.dryRun || (await ctx.host.exists(program))) return
  const name = program.split('/').pop()
  throw new KaError(
    'ESTEP',
    `${program} is missing, and ${setting} runs it: use a bundle whose manifest lists ${name} under packages.names for this release, or install ${name}, then run ./install again`,
  )
}

async function proxySteps(ctx: Context, masters: NonNullable<ClusterConfig['localEndpoint']>['masters']): Promise<Step[]> {
  await needs(ctx, HAPROXY, 'endpoint: local')
  const list = masters.map((m) => `${m.name} ${m.address}`).join(', ')
  const config = await fileStep(ctx, `local endpoint's HAProxy config (${APISERVER_PROXY_CONFIG}: ${list})`, APISERVER_PROXY_CONFIG, nodeProxyConfig(masters))
  const unit = await fileStep(ctx, `local endpoint's unit (${APISERVER_PROXY_UNIT})`, APISERVER_PROXY_UNIT, proxyUnit())
  return [config, unit, ...(await serviceSteps(ctx, APISERVER_PROXY, `local endpoint listening on ${localEndpoint()}`, unit, [config]))]
}

async function vipSteps(ctx: Context, vip: NonNullable<ClusterConfig['vip']>): Promise<Step[]> {
  await needs(ctx, KEEPALIVED, 'endpoint: { vip }')
  const self = ctx.cluster.advertise
  const index = vip.masters.findIndex((m) => m.address === self)
  if (index < 0)
    throw new KaError(
      'EUSAGE',
      `this master (${self}) is not among the masters the virtual IP moves between (${vip.masters.map((m) => `${m.name} ${m.address}`).join(', ')}): add it to nodes: with role: master and its advertiseAddress (or to --masters)`,
    )
  const iface = vip.iface ?? (ctx.host.root === '/' ? interfaceOf(self) : undefined)
  if (!iface)
    throw new KaError('EUSAGE', `cannot tell which interface holds ${self}: give endpoint: { vip: ${vip.address}, interface: <its name> } in cluster.yaml`)
  const config = await fileStep(
    ctx,
    `virtual IP's keepalived config (${VIP_CONFIG}: ${vip.address} on ${iface}, this master ${index + 1} of ${vip.masters.length})`,
    VIP_CONFIG,
    keepalivedConfig({ vip: vip.address, iface, self, masters: vip.masters, index }),
  )
  const check = await fileStep(ctx, `virtual IP's API server check (${VIP_CHECK})`, VIP_CHECK, vipCheck(), 0o755)
  const unit = await fileStep(ctx, `virtual IP's unit (${VIP_UNIT})`, VIP_UNIT, vipUnit())
  return [config, check, unit, ...(await serviceSteps(ctx, VIP_UNIT_NAME, `virtual IP ${vip.address} managed here`, unit, [config, check]))]
}

/** A unit of ours known to systemd, enabled and running; reloaded when its files changed (both programs keep their state on a reload). */
async function serviceSteps(ctx: Context, name: string, running: string, unit: Step, files: Step[]): Promise<Step[]> {
  const state = await unitState(ctx, name)
  const steps: Step[] = [
    { title: `systemd knows the ${name} unit`, done: unit.done, actions: [{ kind: 'run', argv: ['systemctl', 'daemon-reload'] }] },
    {
      title: `${running} (${name} enabled and running)`,
      done: state.enabled && state.active,
      actions: [{ kind: 'run', argv: ['systemctl', 'enable', '--now', name] }],
    },
  ]
  if (state.active)
    steps.push({
      title: `${name} runs the written config`,
      done: unit.done && files.every((f) => f.done),
      actions: [{ kind: 'run', argv: ['systemctl', 'reload-or-restart', name] }],
    })
  return steps
}
