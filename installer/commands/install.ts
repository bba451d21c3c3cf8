import { isKaError, KaError } from '../../bundle/errors.js'
import { didYouMean, printable } from '../../bundle/text.js'
import { printJson, type Io } from '../../bundle/report.js'
import { type ContextRequest, type Flags, requireSuperuser, resolveContext } from '../context.js'
import { PHASES, PHASE_CHOICES } from '../phases/index.js'
import type { VerifyReport } from '../../bundle/verify.js'
import { type Context, type Live, type Phase, runPhases, type StepReport } from '../plan.js'
import { type InstalledNode, otherVersionRefusal } from '../cluster-view.js'

function phaseList(v: string | undefined, flag: string): string[] | undefined {
  if (v === undefined) return undefined
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  for (const p of list)
    if (!PHASE_CHOICES.includes(p))
      throw new KaError(
        'EUSAGE',
        `${flag}: unknown phase ${JSON.stringify(p)}${didYouMean(p, PHASE_CHOICES)}; the phases are ${PHASE_CHOICES.join(', ')} (./install phases)`,
      )
  return list
}

/** `./install --role master|worker`: verify, then every selected phase in order. */
export async function installCommand(flags: Flags, io: Io): Promise<void> {
  if (flags.role !== 'master' && flags.role !== 'worker') {
    throw new KaError(
      'EUSAGE',
      flags.role === undefined ? 'say which node this is: --role master or --role worker' : `--role ${JSON.stringify(flags.role)}: use master or worker`,
    )
  }
  const role = flags.role
  const only = phaseList(flags.phases, '--phases')
  const skip = phaseList(flags.skipPhases, '--skip-phases') ?? []
  requireSuperuser(flags, `--role ${role}`)
  const selected = PHASES.filter((p) => (!only || only.includes(p.name)) && !skip.includes(p.name))
  const out = reporter(io, flags)
  if (skip.includes('verify')) out.say('note  verify always runs first: --skip-phases cannot skip it (--no-verify is for development only)')
  const { ctx, report, record } = await resolveContext(flags, {
    role,
    needAddress: true,
    record: true,
    phases: selected.map((p) => p.name),
    say: out.say,
    log: 'install',
  })
  const refusal = await otherVersionRefusal(ctx)
  if (refusal) throw new KaError('EUSAGE', refusal)
  const join = ctx.cluster.join
  if (join)
    out.say(
      `join  this node will trust the control plane at ${join.endpoint} with CA key ${join.caCertHash} (from ${flags.joinFile}: written on a node, not covered by the bundle's signature)`,
    )
  await out.run(ctx, selected, report, record)
  const { reports, warnings } = out
  const json = !!flags.json
  const dryRun = ctx.options.dryRun
  if (json) return printJson(io, { ok: true, role, dryRun, steps: reports, warnings, ...(ctx.log ? { log: ctx.log.path } : {}), ...(record ? { record } : {}) })
  io.out(out.summary(dryRun))
  if (!dryRun && role === 'master' && !join && selected.some((p) => p.name === 'finish')) {
    io.out(
      `next: copy this folder (with join/) to the other nodes, then run there:\n  workers:        sudo ./install --role worker --join-file join/worker.yaml\n  extra masters:  sudo ./install --role master --join-file join/control-plane.yaml   (within 2 hours; later: sudo ./install join-command here first)\n`,
    )
  }
}

/**
 * A command that runs phases of its own on this node (controller, certs renew): the bundle
 * verified first, every step reported as the install reports it, then `next` after a real run.
 */
export async function phaseCommand(
  command: string,
  flags: Flags,
  io: Io,
  req: Omit<ContextRequest, 'say' | 'role' | 'needAddress' | 'record'>,
  phases: (node: InstalledNode | undefined) => Phase[],
  next: string | ((ctx: Context) => Promise<string>),
): Promise<void> {
  requireSuperuser(flags, command)
  const out = reporter(io, flags)
  const { ctx, report, record, node } = await resolveContext(flags, { ...req, role: 'worker', needAddress: false, record: true, say: out.say })
  await out.run(ctx, phases(node), report, record)
  const dryRun = ctx.options.dryRun
  if (flags.json) return printJson(io, { ok: true, dryRun, steps: out.reports, warnings: out.warnings, ...(ctx.log ? { log: ctx.log.path } : {}) })
  io.out(out.summary(dryRun))
  if (!dryRun) io.out(typeof next === 'string' ? next : await next(ctx))
}

/**
 * How a run that changes the node reports: each step as it ends (with its actions when it
 * would do something, or with --verbose), warnings on stderr, signs of life while it works,
 * the log and the verification record at the end; with --json nothing until the result.
 */
export function reporter(io: Io, flags: Pick<Flags, 'json' | 'verbose'>) {
  const json = !!flags.json
  const reports: StepReport[] = []
  const warnings: string[] = []
  const say = (line: string) => {
    warnings.push(line)
    if (!json) io.err(`${line}\n`)
  }
  const print = (r: StepReport) => {
    reports.push(r)
    if (json) return
    io.out(`[${r.phase}] ${r.status.padEnd(12)} ${r.title}\n`)
    if (r.status === 'would do' || flags.verbose)
      for (const a of r.actions)
        io.out(
          `      ${a.kind === 'write' ? `write ${a.path}  ${a.sha256}  ${a.mode}` : a.kind === 'run' ? `run   ${a.argv!.join(' ')}` : a.kind === 'rename' ? `move  ${a.path} -> ${a.to}` : `remove ${a.path}`}\n`,
        )
  }
  /** Runs the phases after verification; every failure ends with where the whole story is. */
  const run = async (ctx: Context, phases: Phase[], v: VerifyReport | undefined, record: string | undefined): Promise<void> => {
    ctx.live = liveOutput(io, json, !!flags.verbose)
    const show = (r: StepReport) => {
      ctx.live?.waiting('')
      ctx.log?.line(`[${r.phase}] ${r.status} ${r.title}`)
      print(r)
    }
    if (v)
      show({
        phase: 'verify',
        title: `bundle ${v.name}: ${v.files} files match SHA256SUMS and the lock${v.signedBy ? `, signed by ${v.signedBy}` : ''}`,
        status: 'checked',
        actions: [],
      })
    try {
      await runPhases(ctx, phases, show)
    } catch (e) {
      // A status line (waiting N/T s) ends before the error is printed after it.
      ctx.live?.waiting('')
      if (ctx.log) {
        ctx.log.line(`failed: ${(e as Error).message}`)
        if (isKaError(e)) e.message += `; the full log: ${ctx.log.path}`
      }
      throw e
    }
    if (ctx.log && !json) io.out(`log: ${ctx.log.path}\n`)
    if (record && !json) io.out(`record: ${record}\n`)
  }
  const count = (s: StepReport['status']) => reports.filter((r) => r.status === s).length
  /** The last line: what changed, or what would. */
  const summary = (dryRun: boolean) =>
    dryRun
      ? `dry run: ${count('would do')} steps would change the node; nothing was changed\n`
      : `ok: ${count('done')} steps changed the node, ${count('already done')} were already done\n`
  return { reports, warnings, say, run, summary }
}

/**
 * Signs of life: when a step that changes the node starts (on a terminal a status line that
 * its result line replaces; in a pipe or log a line of its own), a long command's output as
 * it comes (on a terminal or with --verbose), and a wait's progress on the status line.
 */
function liveOutput(io: Io, json: boolean, verbose: boolean, env: NodeJS.ProcessEnv = process.env): Live | undefined {
  if (json) return undefined
  const tty = !!process.stderr.isTTY
  let shown = false
  // In a pipe or a log, a long wait says where it is now and then (a 10-minute silence reads as a hang).
  const every = Number(env.KUBE_AIRGAP_HEARTBEAT_SECONDS ?? 30) * 1000
  let said = 0
  // The status line is replaced in place: written raw, as it carries the terminal's own codes,
  // and cut to the terminal's width (a wrapped line cannot be replaced).
  const status = (line: string) => {
    if (!tty) {
      if (line && Date.now() - said >= every) {
        said = Date.now()
        io.out(`${line}\n`)
      }
      return
    }
    if (!line && !shown) return
    process.stderr.write(`\r\x1b[K${printable(line).slice(0, Math.max(20, (process.stderr.columns || 80) - 1))}`)
    shown = !!line
  }
  return {
    started: (phase, title) => {
      const line = `[${phase}] ${'started'.padEnd(12)} ${title}`
      if (tty) status(line)
      else io.out(`${line}\n`)
    },
    output: (text) => {
      if (!tty && !verbose) return
      status('')
      io.err(text.replace(/\n$/, '').replace(/^/gm, '      | ').concat('\n'))
    },
    waiting: status,
  }
}
