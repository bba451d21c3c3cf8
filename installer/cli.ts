import { lstat, readFile, stat } from 'node:fs/promises'
import { createInterface } from 'node:readline/promises'
import { fileURLToPath } from 'node:url'
import { Command, CommanderError, Option } from 'commander'
import { openBundle, type Bundle } from '../bundle/open.js'
import { publicKeyOnly } from '../bundle/signing.js'
import { printable } from '../bundle/text.js'
import { internalError, isKaError, KaError } from '../bundle/errors.js'
import type { Problem } from '../bundle/verify.js'
import { verifyBundle, type VerifyOptions, type VerifyReport } from '../bundle/verify.js'
import { Sha256 } from '../bundle/digest.js'
import { LOCK_FILE } from '../bundle/layout.js'
import { Host } from './host.js'
import { DEFAULT_CONTAINERD_SOCKET } from './node-paths.js'
import { PHASES, VERIFY_SUMMARY } from './phases/index.js'
import { perform, runPhases, type ClusterSetup, type Context, type InstallOptions, type StepReport } from './plan.js'
import { clusterConfig, defaultRouteAddress } from './cluster-config.js'
import { parseJoinFile, type JoinFile } from './kubeadm.js'
import { joinFileSteps, newJoinToken } from './phases/cluster.js'
import { doctor } from './doctor.js'
import { resetPhase } from './phases/reset.js'
import { PROC_NET_ROUTE, RECORD_DIR } from './node-paths.js'

/** The bundle this installer sits in: `<bundle>/installer/install.mjs`. */
const BUNDLE_DIR = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')
const KNOWN = ['verify', ...PHASES.map((p) => p.name)]

function phaseList(v: string | undefined, flag: string): string[] | undefined {
  if (v === undefined) return undefined
  const list = v.split(',').map((s) => s.trim()).filter(Boolean)
  for (const p of list) if (!KNOWN.includes(p)) throw new KaError('EUSAGE', `${flag}: unknown phase ${JSON.stringify(p)}; the phases are ${KNOWN.join(', ')} (./install phases)`)
  return list
}

interface RunFlags {
  role?: string
  config?: string
  joinFile?: string
  advertiseAddress?: string
  podSubnet?: string
  serviceSubnet?: string
  controlPlaneEndpoint?: string
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
  /** commander's name for --no-verify: false when given. */
  verify: boolean
  hostCommands?: string
}

/** Phases whose plans run host commands that change a node (systemctl, modprobe, sysctl, swapoff). */
const CHANGES_HOST = new Set(['kernel', 'containerd', 'kubernetes', 'cluster', 'network', 'finish'])

/**
 * Under --root, files land in the root but a bare host command would act on this machine:
 * refuse, before anything, unless the commands are pointed elsewhere (or nothing runs).
 */
function checkRootCommands(flags: RunFlags, phases: string[], dryRun: boolean): void {
  if (flags.root === '/' || dryRun || flags.hostCommands || !phases.some((p) => CHANGES_HOST.has(p) || p === 'reset')) return
  throw new KaError('EUSAGE', `--root ${flags.root} puts files under ${flags.root}, but systemctl, modprobe, sysctl and swapoff would still act on this machine: give --host-commands DIR (stand-ins for them), or --dry-run`)
}

const out = (s: string) => process.stdout.write(printable(s))
const warn = (s: string) => process.stderr.write(`${printable(s)}\n`)

async function install(flags: RunFlags): Promise<void> {
  if (flags.role !== 'master' && flags.role !== 'worker') {
    throw new KaError('EUSAGE', flags.role === undefined ? 'say which node this is: --role master or --role worker' : `--role ${JSON.stringify(flags.role)}: use master or worker`)
  }
  const only = phaseList(flags.phases, '--phases')
  const skip = phaseList(flags.skipPhases, '--skip-phases') ?? []
  await requireRoot(flags.root)
  const selected = (name: string) => (!only || only.includes(name)) && !skip.includes(name)
  checkRootCommands(flags, PHASES.map((p) => p.name).filter(selected), !!flags.dryRun)
  const options: InstallOptions = { role: flags.role, root: flags.root, dryRun: !!flags.dryRun, containerdAddress: flags.containerdAddress, json: !!flags.json, verbose: !!flags.verbose }
  const reports: StepReport[] = []
  const warnings: string[] = []
  const say = (line: string) => (warnings.push(line), options.json ? undefined : warn(line))
  const host = nodeHost(flags, options.dryRun)
  // Every input is checked before anything is verified, read as trusted or changed.
  const cluster = await clusterSetup(flags, host, options.role)
  for (const w of cluster.warnings) say(`warn  ${w}`)
  const show = (r: StepReport) => {
    reports.push(r)
    if (options.json) return
    out(`[${r.phase}] ${r.status.padEnd(12)} ${r.title}\n`)
    if (r.status === 'would do' || options.verbose) for (const a of r.actions) out(`      ${a.kind === 'write' ? `write ${a.path}  ${a.sha256}  ${a.mode}` : a.kind === 'run' ? `run   ${a.argv!.join(' ')}` : `remove ${a.path}`}\n`)
  }

  if (skip.includes('verify')) say('note  verify always runs first: --skip-phases cannot skip it (--no-verify is for development only)')
  const { bundle, report: v } = await openVerified(flags, host, say)
  if (v) show({ phase: 'verify', title: `bundle ${v.name}: ${v.files} files match SHA256SUMS and the lock${v.signedBy ? `, signed by ${v.signedBy}` : ''}`, status: 'checked', actions: [] })
  const join = cluster.setup.join
  if (join) say(`join  this node will trust the control plane at ${join.endpoint} with CA key ${join.caCertHash} (from ${flags.joinFile}: written on a node, not covered by the bundle's signature)`)
  const ctx: Context = { host, bundle, options, cluster: cluster.setup, say }
  await runPhases(
    ctx,
    PHASES.filter((p) => selected(p.name)),
    show,
  )
  if (options.json) out(`${JSON.stringify({ ok: true, role: options.role, dryRun: options.dryRun, steps: reports, warnings }, null, 2)}\n`)
  else {
    const count = (s: StepReport['status']) => reports.filter((r) => r.status === s).length
    out(options.dryRun ? `dry run: ${count('would do')} steps would change the node; nothing was changed\n` : `ok: ${count('done')} steps changed the node, ${count('already done')} were already done\n`)
    if (!options.dryRun && options.role === 'master' && !cluster.setup.join && selected('finish')) {
      out(`next: copy this folder (with join/) to the other nodes, then run there:\n  workers:        sudo ./install --role worker --join-file join/worker.yaml\n  extra masters:  sudo ./install --role master --join-file join/control-plane.yaml   (within 2 hours; later: sudo ./install join-command here first)\n`)
    }
  }
}

async function requireRoot(root: string): Promise<void> {
  const st = await stat(root).catch(() => undefined)
  if (!st?.isDirectory()) throw new KaError('EUSAGE', `--root ${root}: no such folder; create it or give an existing one`)
}

async function verifyOptions(flags: RunFlags): Promise<VerifyOptions> {
  if (!flags.publicKey) return flags.requireSignature ? { requireSignature: true } : {}
  const pem = await readFile(flags.publicKey, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `--public-key ${flags.publicKey}: cannot read it`)
  })
  return { publicKeyPem: publicKeyOnly(pem, `--public-key ${flags.publicKey}`), keySource: flags.publicKey, requireSignature: true }
}

const nodeHost = (flags: RunFlags, dryRun: boolean): Host => new Host(flags.root, dryRun, flags.hostCommands ? { hostCommands: flags.hostCommands } : {})

/**
 * The gate in front of every command that reads the bundle: verification (and its record),
 * then the bundle opened on what verification saw, so that every file read later is checked
 * against the same hashes. --no-verify skips it with a warning, and the record says so.
 */
async function openVerified(flags: RunFlags, host: Host, say: (line: string) => void): Promise<{ bundle: Bundle; report?: VerifyReport }> {
  if (!flags.verify) {
    say('warn  --no-verify: the bundle was NOT verified and its files are used as they are; for development only, never on a real node')
    if (!host.dryRun) await writeRecord(host, { result: 'not verified (--no-verify)', bundle: flags.bundle })
    return { bundle: await openBundle(flags.bundle) }
  }
  const v = await verifyBundle(flags.bundle, await verifyOptions(flags))
  for (const j of v.joinFiles) say(`note  ${j}: written on a node, not covered by the bundle's signature`)
  if (v.signed && !v.signedBy) say('note  the bundle is signed, but the signature was not checked here (no --public-key): check it with kube-airgap-verify')
  if (!host.dryRun) await writeRecord(host, verifiedRecord(v))
  return { bundle: await openBundle(flags.bundle, v.digests), report: v }
}

/**
 * What verification found, for a security officer: /var/log/kube-airgap/verify-<time>.json
 * with the bundle's name, its lock's digest, the signing key's fingerprint, every file's
 * hash and the result. Written after the bundle proved itself (a failed verification
 * changes nothing on the node).
 */
async function writeRecord(host: Host, fields: Record<string, unknown>): Promise<string> {
  const at = new Date()
  const text = `${JSON.stringify({ result: fields.result, time: at.toISOString(), ...fields }, null, 2)}\n`
  const path = `${RECORD_DIR}/verify-${at.toISOString().replace(/[:.]/g, '-')}.json`
  await host.write(path, text, 0o644, Sha256.of(text))
  return path
}

const verifiedRecord = (v: VerifyReport): Record<string, unknown> => ({
  result: 'verified',
  bundle: v.name,
  platform: v.lock.platforms[0],
  kubernetes: v.lock.kubernetes,
  lock: v.digests.get(LOCK_FILE)?.oci,
  signedBy: v.signedBy ?? null,
  files: Object.fromEntries([...v.digests].sort(([a], [b]) => (a < b ? -1 : 1)).map(([p, d]) => [p, d.oci])),
  ...(v.joinFiles.length ? { notCovered: v.joinFiles } : {}),
})

/** cluster.yaml, flags and the join file, checked; the advertise address resolved. */
async function clusterSetup(flags: RunFlags, host: Host, role: 'master' | 'worker', needAddress = true): Promise<{ setup: ClusterSetup; warnings: string[] }> {
  let text: string | undefined
  if (flags.config) {
    text = await readFile(flags.config, 'utf8').catch(() => {
      throw new KaError('EUSAGE', `--config ${flags.config}: cannot read it; give a cluster.yaml (see manifests/cluster.example.yaml)`)
    })
  }
  const { config, warnings } = clusterConfig(text, flags.config ?? 'flags', flags)
  let join: JoinFile | undefined
  if (flags.joinFile) {
    const st = await lstat(flags.joinFile).catch(() => undefined)
    if (st?.isSymbolicLink()) throw new KaError('EUSAGE', `--join-file ${flags.joinFile} is a symbolic link: refused; give the join file itself`)
    const jt = await readFile(flags.joinFile, 'utf8').catch(() => {
      throw new KaError('EUSAGE', `--join-file ${flags.joinFile}: cannot read it; copy join/ from the master's bundle folder`)
    })
    join = parseJoinFile(jt, flags.joinFile)
    if (join.nodes?.includes(config.nodeName)) {
      throw new KaError('EUSAGE', `this node would join as ${JSON.stringify(config.nodeName)}, a name the cluster has already (${flags.joinFile} lists ${join.nodes.join(', ')}): give it its own with --node-name, or nodes: { <hostname>: { nodeName: ... } } in cluster.yaml`)
    }
    if (st && st.mode & 0o077) warnings.push(`${flags.joinFile} is readable by others (mode ${(st.mode & 0o777).toString(8)}): it holds a join secret; chmod 600 it`)
    if ((role === 'master') !== (join.role === 'control-plane')) {
      throw new KaError('EUSAGE', `--join-file ${flags.joinFile} is for a ${join.role === 'worker' ? 'worker' : 'control plane'}, not a ${role}; use join/${role === 'master' ? 'control-plane' : 'worker'}.yaml`)
    }
  }
  const advertise = config.advertiseAddress ?? defaultRouteAddress(await host.readText(PROC_NET_ROUTE))
  if (!advertise && role === 'master' && needAddress) throw new KaError('EUSAGE', "cannot tell this node's address (no default route): give --advertise-address")
  const wait = Number(flags.waitTimeout)
  if (!Number.isInteger(wait) || wait <= 0 || wait > 86_400) throw new KaError('EUSAGE', `--wait-timeout ${JSON.stringify(flags.waitTimeout)}: give whole seconds from 1 to 86400, e.g. 600`)
  return { setup: { config, advertise: advertise ?? '', ...(join ? { join } : {}), waitMs: wait * 1000 }, warnings }
}

const program = new Command('install')
  .description('Install Kubernetes from this kube-airgap bundle, with nothing from the network.')
  .showHelpAfterError('(run ./install --help for usage)')
  .exitOverride()
  .configureOutput({ outputError: (s, write) => write(s.startsWith('error:') ? `install: ${s}` : s) })
  .addOption(new Option('--role <role>', 'what this node is: master or worker'))
  .option('--config <file>', 'cluster.yaml (see manifests/cluster.example.yaml); flags win over it')
  .option('--join-file <file>', 'join/worker.yaml or join/control-plane.yaml from the first master')
  .option('--advertise-address <ip>', "this node's address (default: the default route's interface)")
  .option('--pod-subnet <cidr>', 'pod addresses (default 10.244.0.0/16)')
  .option('--service-subnet <cidr>', 'service addresses (default 10.96.0.0/12)')
  .option('--control-plane-endpoint <host:port>', 'where every node reaches the API (default: advertise address:6443)')
  .option('--node-name <name>', "this node's name (default: the hostname)")
  .option('--wait-timeout <seconds>', 'how long finish waits for the node to be Ready', '600')
  .option('--public-key <file>', 'the bundle must be signed by this Ed25519 public key (a guard against damage; against a hostile stick, check with kube-airgap-verify first)')
  .option('--require-signature', 'refuse an unsigned bundle (a guard against damage, not against a hostile stick)')
  .option('--no-verify', 'skip verification (development only: warns, and the record says so)')
  .option('--phases <list>', 'run only these phases (comma separated)')
  .option('--skip-phases <list>', 'run all phases but these')
  .option('--dry-run', 'print every file (path and content hash) and command; change nothing')
  .option('--root <dir>', 'put every file under DIR instead of / (host commands need --host-commands then)', '/')
  .option('--host-commands <dir>', 'under --root: run systemctl, modprobe, sysctl, swapoff (and any host command) from DIR')
  .option('--containerd-address <socket>', "containerd's socket", DEFAULT_CONTAINERD_SOCKET)
  .option('--json', 'print the result as JSON')
  .option('-v, --verbose', 'print every action, also of steps already done')
  .addOption(new Option('--bundle <dir>', 'the unpacked bundle (default: the one this installer is in)').default(BUNDLE_DIR).hideHelp())
  .action(async (flags: RunFlags) => install(flags))

program
  .command('verify')
  .description(`${VERIFY_SUMMARY}; writes a record to /var/log/kube-airgap/`)
  .option('--public-key <file>', 'the bundle must be signed by this Ed25519 public key')
  .option('--require-signature', 'refuse an unsigned bundle')
  .option('--json', 'print the result as JSON')
  .action(async (flags: { json?: boolean; publicKey?: string; requireSignature?: boolean }) => {
    const top = program.opts<RunFlags>()
    const merged = { ...top, ...(flags.publicKey ? { publicKey: flags.publicKey } : {}), ...(flags.requireSignature ? { requireSignature: true } : {}) }
    const v = await verifyBundle(top.bundle, await verifyOptions(merged))
    for (const j of v.joinFiles) warn(`note  ${j}: written on a node, not covered by the bundle's signature`)
    const record = await writeRecord(nodeHost(top, !!top.dryRun), verifiedRecord(v))
    out(flags.json ? `${JSON.stringify({ ok: true, name: v.name, files: v.files, bytes: v.bytes, signedBy: v.signedBy ?? null, record }, null, 2)}\n` : `ok: ${v.name}: ${v.files} files match SHA256SUMS and the lock${v.signedBy ? `; signed by ${v.signedBy}` : ''}; record: ${record}\n`)
  })

program
  .command('join-command')
  .description('on the first master: a fresh join token and certificate key, and join/*.yaml rewritten')
  .action(async () => {
    const flags = program.opts<RunFlags>()
    await requireRoot(flags.root)
    const host = nodeHost(flags, !!flags.dryRun)
    const { setup } = await clusterSetup({ ...flags, role: 'master' }, host, 'master', false)
    const { bundle } = await openVerified(flags, host, warn)
    const ctx: Context = { host, bundle, cluster: setup, options: { role: 'master', root: flags.root, dryRun: !!flags.dryRun, containerdAddress: flags.containerdAddress, json: false, verbose: false }, say: warn }
    if (flags.dryRun) return void out('dry run: join-command would make a fresh token and certificate key and rewrite join/worker.yaml and join/control-plane.yaml; nothing was changed\n')
    const state = await newJoinToken(ctx)
    for (const step of await joinFileSteps(ctx, state)) for (const a of step.actions) await perform(step.on ?? host, a)
    out(`ok: join/worker.yaml and join/control-plane.yaml rewritten (token expires ${state.expires}, certificate key ${state.certificateKeyExpires})\n`)
  })

/** A context for the commands beside the install itself (doctor, reset): defaults for the cluster. */
async function sideContext(dryRun: boolean, command: 'doctor' | 'reset'): Promise<Context> {
  const flags = program.opts<RunFlags>()
  await requireRoot(flags.root)
  if (command === 'reset') checkRootCommands(flags, ['reset'], dryRun)
  const host = nodeHost(flags, dryRun)
  const { setup } = await clusterSetup({ ...flags }, host, 'worker', false)
  // doctor changes nothing on the node, not even the verification log: a dry host for the record.
  const { bundle } = await openVerified(flags, command === 'doctor' ? nodeHost(flags, true) : host, warn)
  return { host, bundle, cluster: setup, options: { role: 'worker', root: flags.root, dryRun, containerdAddress: flags.containerdAddress, json: !!flags.json, verbose: false }, say: warn }
}

program
  .command('doctor')
  .description('read-only checks of this node for every failure in the field notes; each with what was found and the fix')
  .option('--json', 'print the findings as JSON')
  .action(async (flags: { json?: boolean }) => {
    const findings = await doctor(await sideContext(false, 'doctor'))
    const fails = findings.filter((f) => f.level === 'fail').length
    if (flags.json || program.opts<RunFlags>().json) out(`${JSON.stringify({ ok: fails === 0, findings }, null, 2)}\n`)
    else {
      const w = Math.max(...findings.map((f) => f.check.length))
      for (const f of findings) out(`${f.level.toUpperCase().padEnd(4)}  ${f.check.padEnd(w)}  ${f.found}${f.fix ? `\n${' '.repeat(w + 8)}fix: ${f.fix}` : ''}\n`)
      out(fails ? `${fails} problem${fails > 1 ? 's' : ''} found\n` : 'no problems found\n')
    }
    if (fails) process.exitCode = 1
  })

program
  .command('reset')
  .description('undo the cluster on this node (kubeadm reset, pods and containers removed, CNI state removed; images kept); --purge also removes everything the installer installed')
  .option('--purge', 'also remove every file the installer installed and restore /etc/fstab')
  .option('--yes', 'do not ask before acting')
  .action(async (flags: { purge?: boolean; yes?: boolean }) => {
    const dryRun = !!program.opts<RunFlags>().dryRun
    const ctx = await sideContext(dryRun, 'reset')
    const phase = resetPhase(!!flags.purge)
    if (!flags.yes && !dryRun) {
      const todo = (await phase.plan(ctx)).filter((s) => !s.done)
      if (todo.length === 0) return void out('ok: nothing to reset\n')
      if (!process.stdin.isTTY) throw new KaError('EUSAGE', 'reset changes the node and there is no terminal to ask on: run it with --yes (or --dry-run to see what it would do)')
      out(`./install reset will:\n${todo.map((s) => `  ${s.title}\n`).join('')}`)
      const rl = createInterface({ input: process.stdin, output: process.stdout })
      const answer = await rl.question('Go ahead? [y/N] ')
      rl.close()
      if (!/^y(es)?$/i.test(answer.trim())) return void out('nothing was changed\n')
    }
    const reports = await runPhases(ctx, [phase], (r) => out(`[reset] ${r.status.padEnd(12)} ${r.title}\n`))
    out(dryRun ? 'dry run: nothing was changed\n' : `ok: ${reports.filter((r) => r.status === 'done').length} steps changed the node\n`)
  })

program
  .command('phases')
  .description('list the phases, in the order they run')
  .action(() => {
    out(`verify       ${VERIFY_SUMMARY}\n`)
    for (const p of PHASES) out(`${p.name.padEnd(12)} ${p.summary}\n`)
  })

function report(e: unknown, json: boolean): number {
  if (e instanceof CommanderError) return e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version' ? 0 : 2
  if (isKaError(e)) {
    if (json) out(`${JSON.stringify({ ok: false, error: e.toJSON() }, null, 2)}\n`)
    for (const p of ((e.facts.problems as Problem[] | undefined) ?? []).slice(1)) warn(`  ${p.path}: ${p.problem}`)
    warn(`install: ${e.code}: ${e.message}`)
    return e.exitCode
  }
  warn(internalError('install', e))
  return 1
}

try {
  await program.parseAsync(process.argv)
} catch (e) {
  process.exitCode = report(e, process.argv.includes('--json'))
}
