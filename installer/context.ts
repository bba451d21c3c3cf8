import { lstat, readFile, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { KaError } from '../bundle/errors.js'
import { localEndpoint } from './apiserver-proxy.js'
import type { VerifyReport } from '../bundle/verify.js'
import { clusterConfig, unfitConfig } from './cluster-config.js'
import { openVerified } from './gate.js'
import { type InstalledNode, installedNode } from './cluster-view.js'
import { gatherFacts, type NodeFacts } from './facts.js'
import { TOOL_VERSION } from '../bundle/version.js'
import { DryRunHost, type Host, LoggingHost, NodeHost, RunLog } from './host.js'
import { parseJoinFile, type JoinFile } from './kubeadm.js'
import { ADDON_CHOICES, KUBELET_KUBECONFIG, RECORD_DIR } from './node-paths.js'
import { addonChoices } from './addons.js'
import type { ClusterSetup, Context } from './plan.js'

/** The flags every command of ./install shares (commander's names). */
export interface Flags {
  role?: string
  config?: string
  joinFile?: string
  advertiseAddress?: string
  podSubnet?: string
  serviceSubnet?: string
  controlPlaneEndpoint?: string
  endpoint?: string
  masters?: string
  nodeName?: string
  waitTimeout: string
  publicKey?: string
  requireSignature?: boolean
  phases?: string
  skipPhases?: string
  dryRun?: boolean
  root: string
  containerdAddress: string
  json?: boolean
  verbose?: boolean
  bundle: string
  /** A delta bundle's old bundle folder (default: beside this one). */
  base?: string
  /** commander's name for --no-verify: false when given. */
  verify: boolean
  hostCommands?: string
}

export interface ContextRequest {
  role: 'master' | 'worker'
  /** A master's address must be known (kubeadm init); join-command, doctor and reset do without. */
  needAddress: boolean
  /** Whether the verification record is written (doctor changes nothing, not even the log). */
  record: boolean
  /** The phases that will run (under --root, those that run host commands need --host-commands). */
  phases: string[]
  /** Keep a log of the run under /var/log/kube-airgap/<log>-<time>.log (not in a dry run): opened once the bundle is verified. */
  log?: string
  /**
   * The command works on the cluster node already installed here (upgrade): the context takes
   * its role, name, address, pod subnet and Calico's autodetection from what kubeadm and the
   * installer left on the node, and refuses a node that is not one.
   */
  installed?: boolean
  say(line: string): void
}

/**
 * Everything a command works from, resolved once and fully defaulted (as nypm's
 * resolveOperationOptions does): the node as a Host (a DryRunHost around it for --dry-run),
 * the bundle folder as a Host of its own, the machine's facts, cluster.yaml with the flags
 * over it and the join file, checked; then the gate: the bundle verified (and the record
 * written), and opened on what verification saw, reusing the lock it parsed.
 */
export async function resolveContext(
  flags: Flags,
  req: ContextRequest,
): Promise<{ ctx: Context; report?: VerifyReport; record?: string; node?: InstalledNode }> {
  await requireRoot(flags.root)
  checkRootCommands(flags, req.phases)
  const dryRun = !!flags.dryRun
  const node = new NodeHost(flags.root, flags.hostCommands ? { hostCommands: flags.hostCommands } : {})
  const host: Host = dryRun ? new DryRunHost(node) : node
  const folder = new NodeHost(flags.bundle, { noLinks: true })
  const usb: Host = dryRun ? new DryRunHost(folder) : folder
  const facts = await gatherFacts(node)
  // Every input is checked before anything is verified, read as trusted or changed.
  // The install checks that cluster.yaml fits this node: a real run refuses, a dry run says FAIL and plans on.
  const fit = req.needAddress ? (dryRun ? 'fail' : 'refuse') : 'skip'
  const { setup, warnings, fails } = await clusterSetup(flags, facts, req.role, req.needAddress && !dryRun, await node.exists(KUBELET_KUBECONFIG), fit)
  for (const f of fails) req.say(`FAIL  ${f}; a real run stops here`)
  if (dryRun && req.needAddress && !setup.advertise) {
    warnings.push("cannot tell this node's address (no default route): the plan shows <advertise-address>; a real run needs --advertise-address")
    setup.advertise = '<advertise-address>'
  }
  for (const w of warnings) req.say(`WARN  ${w}`)
  const recordOn = req.record && !dryRun ? node : undefined
  const { bundle, report, record } = await openVerified(flags, recordOn ?? new DryRunHost(node), req.say)
  // Nothing is written on the node before verification, the log included.
  const log = req.log && !dryRun ? new RunLog(node.path(`${RECORD_DIR}/${req.log}-${new Date().toISOString().replace(/[:.]/g, '-')}.log`)) : undefined
  log?.line(
    `kube-airgap ${TOOL_VERSION} ${req.log}: bundle ${report?.name ?? flags.bundle} (${report ? `verified, ${report.files} files` : 'NOT verified: --no-verify'})`,
  )
  const say = (line: string) => {
    req.say(line)
    log?.line(line)
  }
  const ctx: Context = {
    host: log ? new LoggingHost(host, log) : host,
    usb: log ? new LoggingHost(usb, log) : usb,
    bundle,
    facts,
    cluster: setup,
    options: { role: req.role, dryRun, containerdAddress: flags.containerdAddress, json: !!flags.json, verbose: !!flags.verbose },
    say,
    ...(log ? { log } : {}),
  }
  const installed = req.installed ? await asInstalled(ctx) : undefined
  return {
    ctx,
    ...(report ? { report } : {}),
    ...(recordOn ? { record: node.path(record) } : {}),
    ...(installed ? { node: installed } : {}),
  }
}

/** The context made the node's own: what kubeadm and the installer left here, over the flags. */
async function asInstalled(ctx: Context): Promise<InstalledNode> {
  const node = await installedNode(ctx)
  if (!node)
    throw new KaError(
      'EUSAGE',
      'this node is not part of a cluster kube-airgap set up (no kubeadm config of ours beside a kubeconfig in /etc/kubernetes): install it with sudo ./install --role master|worker',
    )
  // Calico is applied from the first master only; the others take calicoctl (network phase).
  ctx.options.role = node.kind === 'first-master' ? 'master' : 'worker'
  // The add-ons as the install chose them, which the first master kept.
  const chosen = await ctx.host.readText(ADDON_CHOICES)
  ctx.cluster = {
    ...ctx.cluster,
    advertise: node.advertise ?? ctx.cluster.advertise,
    config: {
      ...ctx.cluster.config,
      nodeName: node.name,
      ...(node.podSubnet ? { podSubnet: node.podSubnet } : {}),
      ...(node.calicoAutodetection && !ctx.cluster.config.calicoAutodetection ? { calicoAutodetection: node.calicoAutodetection } : {}),
      ...(chosen ? { addons: addonChoices(JSON.parse(chosen), ADDON_CHOICES) } : {}),
    },
  }
  return node
}

async function requireRoot(root: string): Promise<void> {
  const st = await stat(root).catch(() => undefined)
  if (!st?.isDirectory()) throw new KaError('EUSAGE', `--root ${root}: no such folder; create it or give an existing one`)
}

/**
 * The commands that change the node need root: without it, one line and exit 2, before
 * anything is read (a dry run, and a --root folder of one's own, do without).
 */
export function requireSuperuser(flags: Pick<Flags, 'root' | 'dryRun'>, command: string, euid = process.geteuid?.() ?? 0): void {
  if (euid === 0 || flags.dryRun || flags.root !== '/') return
  throw new KaError('EUSAGE', `run it as root: sudo ./install ${command} (or --dry-run to see what it would do)`)
}

/** Where a verification record goes: /var/log/kube-airgap as root; for another user, their own state folder. */
export function recordDir(flags: Pick<Flags, 'root'>, env: NodeJS.ProcessEnv = process.env, euid = process.geteuid?.() ?? 0): string {
  if (euid === 0 || flags.root !== '/') return RECORD_DIR
  return join(env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state'), 'kube-airgap')
}

/** Phases whose plans run host commands that change a node (systemctl, modprobe, sysctl, swapoff). */
const CHANGES_HOST = new Set(['kernel', 'containerd', 'kubernetes', 'endpoint', 'cluster', 'network', 'finish', 'reset', 'certs'])

/**
 * Under --root, files land in the root but a bare host command would act on this machine:
 * refuse, before anything, unless the commands are pointed elsewhere (or nothing runs).
 */
function checkRootCommands(flags: Flags, phases: string[]): void {
  if (flags.root === '/' || flags.dryRun || flags.hostCommands || !phases.some((p) => CHANGES_HOST.has(p))) return
  throw new KaError(
    'EUSAGE',
    `--root ${flags.root} puts files under ${flags.root}, but systemctl, modprobe, sysctl and swapoff would still act on this machine: give --host-commands DIR (stand-ins for them), or --dry-run`,
  )
}

/** cluster.yaml, flags and the join file, checked; the advertise address resolved. */
async function clusterSetup(
  flags: Flags,
  facts: NodeFacts,
  role: 'master' | 'worker',
  needAddress: boolean,
  joined: boolean,
  fit: 'refuse' | 'fail' | 'skip',
): Promise<{ setup: ClusterSetup; warnings: string[]; fails: string[] }> {
  let text: string | undefined
  if (flags.config) {
    text = await readFile(flags.config, 'utf8').catch(() => {
      throw new KaError('EUSAGE', `--config ${flags.config}: cannot read it; give a cluster.yaml (see cluster.example.yaml in the bundle folder)`)
    })
  }
  const { config, warnings, listed } = clusterConfig(text, flags.config ?? 'flags', flags, facts)
  let join: JoinFile | undefined
  if (flags.joinFile) {
    const st = await lstat(flags.joinFile).catch(() => undefined)
    if (st?.isSymbolicLink()) throw new KaError('EUSAGE', `--join-file ${flags.joinFile} is a symbolic link: refused; give the join file itself`)
    const jt = await readFile(flags.joinFile, 'utf8').catch(() => {
      throw new KaError('EUSAGE', `--join-file ${flags.joinFile}: cannot read it; copy join/ from the master's bundle folder`)
    })
    // A node that has joined already is not joined again: its join file may have expired
    // since, and may list this node's own name (a rerun, by hand or from Ansible, is harmless).
    join = parseJoinFile(jt, flags.joinFile, joined ? null : facts.now())
    if (!joined && join.nodes?.includes(config.nodeName)) {
      throw new KaError(
        'EUSAGE',
        `this node would join as ${JSON.stringify(config.nodeName)}, the name of a Ready node the cluster has already (${flags.joinFile} lists ${join.nodes.join(', ')}): give it its own with --node-name, or nodes: { <hostname>: { nodeName: ... } } in cluster.yaml`,
      )
    }
    if (st && st.mode & 0o077)
      warnings.push(`${flags.joinFile} is readable by others (mode ${(st.mode & 0o777).toString(8)}): it holds a join secret; chmod 600 it`)
    // The first master's own 127.0.0.1: only this node's proxy makes it the control plane.
    if (join.endpoint === localEndpoint() && !config.localEndpoint)
      throw new KaError(
        'EUSAGE',
        `--join-file ${flags.joinFile} points at the local endpoint ${join.endpoint} (endpoint: local), which this node has not set up: give it the same cluster.yaml as the first master (--config), whose nodes: list the masters`,
      )
    if ((role === 'master') !== (join.role === 'control-plane')) {
      throw new KaError(
        'EUSAGE',
        `--join-file ${flags.joinFile} is for a ${join.role === 'worker' ? 'worker' : 'control plane'}, not a ${role}; use join/${role === 'master' ? 'control-plane' : 'worker'}.yaml`,
      )
    }
  }
  const advertise = config.advertiseAddress ?? facts.defaultRouteAddress
  if (!advertise && role === 'master' && needAddress)
    throw new KaError('EUSAGE', "cannot tell this node's address (no default route): give --advertise-address")
  const wait = Number(flags.waitTimeout)
  if (!Number.isInteger(wait) || wait <= 0 || wait > 86_400)
    throw new KaError('EUSAGE', `--wait-timeout ${JSON.stringify(flags.waitTimeout)}: give whole seconds from 1 to 86400, e.g. 600`)
  // A node that joined already was set up from this file: a rerun is not judged again.
  const fails = fit === 'skip' || joined ? [] : unfitConfig(config, listed, facts, { advertise, firstMaster: role === 'master' && !join })
  if (fit === 'refuse' && fails.length) throw new KaError('EUSAGE', fails[0]!)
  return { setup: { config, advertise: advertise ?? '', ...(join ? { join } : {}), waitMs: wait * 1000 }, warnings, fails }
}
