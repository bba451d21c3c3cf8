import { stat } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { Command, CommanderError, Option } from 'commander'
import { openBundle } from './bundle.js'
import { isKaError, KaError } from './core/errors.js'
import type { Problem } from './core/verify.js'
import { verifyBundle } from './core/verify.js'
import { Host } from './host.js'
import { DEFAULT_CONTAINERD_SOCKET } from './paths.js'
import { PHASES, VERIFY_SUMMARY } from './phases/index.js'
import { runPhases, type Context, type InstallOptions, type StepReport } from './plan.js'

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
  phases?: string
  skipPhases?: string
  dryRun?: boolean
  root: string
  containerdAddress: string
  json?: boolean
  verbose?: boolean
  bundle: string
}

const out = (s: string) => process.stdout.write(s)
const warn = (s: string) => process.stderr.write(`${s}\n`)

async function install(flags: RunFlags): Promise<void> {
  if (flags.role !== 'master' && flags.role !== 'worker') {
    throw new KaError('EUSAGE', flags.role === undefined ? 'say which node this is: --role master or --role worker' : `--role ${JSON.stringify(flags.role)}: use master or worker`)
  }
  const only = phaseList(flags.phases, '--phases')
  const skip = phaseList(flags.skipPhases, '--skip-phases') ?? []
  const st = await stat(flags.root).catch(() => undefined)
  if (!st?.isDirectory()) throw new KaError('EUSAGE', `--root ${flags.root}: no such folder; create it or give an existing one`)
  const selected = (name: string) => (!only || only.includes(name)) && !skip.includes(name)
  const options: InstallOptions = { role: flags.role, root: flags.root, dryRun: !!flags.dryRun, containerdAddress: flags.containerdAddress, json: !!flags.json, verbose: !!flags.verbose }
  const reports: StepReport[] = []
  const warnings: string[] = []
  const show = (r: StepReport) => {
    reports.push(r)
    if (options.json) return
    out(`[${r.phase}] ${r.status.padEnd(12)} ${r.title}\n`)
    if (r.status === 'would do' || options.verbose) for (const a of r.actions) out(`      ${a.kind === 'write' ? `write ${a.path}  ${a.sha256}  ${a.mode}` : a.kind === 'run' ? `run   ${a.argv!.join(' ')}` : `remove ${a.path}`}\n`)
  }

  // Nothing on the node changes, and nothing in the bundle is trusted, before this passes.
  if (selected('verify')) {
    const v = await verifyBundle(flags.bundle)
    show({ phase: 'verify', title: `bundle ${v.name}: ${v.files} files match SHA256SUMS and the lock`, status: 'checked', actions: [] })
  }
  const ctx: Context = {
    host: new Host(flags.root, options.dryRun),
    bundle: await openBundle(flags.bundle),
    options,
    say: (line) => (warnings.push(line), options.json ? undefined : warn(line)),
  }
  await runPhases(
    ctx,
    PHASES.filter((p) => selected(p.name)),
    show,
  )
  if (options.json) out(`${JSON.stringify({ ok: true, role: options.role, dryRun: options.dryRun, steps: reports, warnings }, null, 2)}\n`)
  else {
    const count = (s: StepReport['status']) => reports.filter((r) => r.status === s).length
    out(options.dryRun ? `dry run: ${count('would do')} steps would change the node; nothing was changed\n` : `ok: ${count('done')} steps changed the node, ${count('already done')} were already done\n`)
  }
}

const program = new Command('install')
  .description('Install Kubernetes from this kube-airgap bundle, with nothing from the network.')
  .showHelpAfterError('(run ./install --help for usage)')
  .exitOverride()
  .configureOutput({ outputError: (s, write) => write(s.startsWith('error:') ? `install: ${s}` : s) })
  .addOption(new Option('--role <role>', 'what this node is: master or worker'))
  .option('--phases <list>', 'run only these phases (comma separated)')
  .option('--skip-phases <list>', 'run all phases but these')
  .option('--dry-run', 'print every file (path and content hash) and command; change nothing')
  .option('--root <dir>', 'put every file under DIR instead of /', '/')
  .option('--containerd-address <socket>', "containerd's socket", DEFAULT_CONTAINERD_SOCKET)
  .option('--json', 'print the result as JSON')
  .option('-v, --verbose', 'print every action, also of steps already done')
  .addOption(new Option('--bundle <dir>', 'the unpacked bundle (default: the one this installer is in)').default(BUNDLE_DIR).hideHelp())
  .action(async (flags: RunFlags) => install(flags))

program
  .command('verify')
  .description(VERIFY_SUMMARY)
  .option('--json', 'print the result as JSON')
  .action(async (flags: { json?: boolean }) => {
    const v = await verifyBundle(program.opts<RunFlags>().bundle)
    out(flags.json ? `${JSON.stringify({ ok: true, name: v.name, files: v.files, bytes: v.bytes }, null, 2)}\n` : `ok: ${v.name}: ${v.files} files match SHA256SUMS and the lock\n`)
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
  warn(`install: internal error: ${(e as Error)?.stack ?? String(e)}`)
  return 1
}

try {
  await program.parseAsync(process.argv)
} catch (e) {
  process.exitCode = report(e, process.argv.includes('--json'))
}
