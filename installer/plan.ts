import type { Readable } from 'node:stream'
import type { Bundle } from '../bundle/open.js'
import { Sha256 } from '../bundle/digest.js'
import { KaError } from '../bundle/errors.js'
import { extractMembers } from './archive.js'
import type { Host, RunLog } from './host.js'
import type { ClusterConfig } from './cluster-config.js'
import type { JoinFile } from './kubeadm.js'
import type { NodeFacts } from './facts.js'

export const PHASE_NAMES = [
  'verify',
  'preflight',
  'packages',
  'kernel',
  'containerd',
  'cni',
  'kubernetes',
  'images',
  'endpoint',
  'cluster',
  'network',
  'finish',
  'addons',
  'reset',
  'skew',
  'backup',
  'upgrade',
  'rollback',
  'stage',
  'controller',
  'certs',
  'remove-node',
  'snapshot',
  'restore',
  'registry',
  'registry-trust',
] as const
export type PhaseName = (typeof PHASE_NAMES)[number]

/** What a step does to the node, as data: a dry run prints it, a run performs it. */
export type Action =
  | {
      kind: 'write'
      path: string
      mode: number
      sha256: Sha256
      size: number
      data: () => Buffer | Readable | Promise<Buffer | Readable>
      owner?: { uid: number; gid: number }
    }
  /** `stream`: a long command (kubeadm init/join) whose output is shown as it comes. */
  | {
      kind: 'run'
      argv: string[]
      input?: () => Readable
      timeoutMs?: number
      stream?: boolean
      /** What a failure means, in one line, from the command's output (default: the command and its last lines). */
      failure?: (output: string) => string
    }
  | { kind: 'remove'; path: string }
  /** A file or folder moved aside (kept, never removed). */
  | { kind: 'rename'; path: string; to: string }
  /** Actions run at the same time (independent of each other by construction). */
  | { kind: 'parallel'; actions: Action[] }
  /** Regular files out of a .tar.gz in the bundle, written in one pass over it. */
  | { kind: 'extract'; archive: string; files: { member: string; path: string; mode: number; sha256: Sha256 }[] }

export interface Step {
  title: string
  /** A check of the node or the bundle, not a change to it. */
  checkOnly?: boolean
  /** The node is already as this step would make it. */
  done: boolean
  actions: Action[]
  /** Runs after the actions (and when already done): throws when the result is wrong. */
  check?: () => Promise<void>
  /** Where the actions happen, when not on the node (the join files go to the bundle folder). */
  on?: Host
}

/** What the cluster phases work from: checked before anything ran. */
export interface ClusterSetup {
  config: ClusterConfig
  /** The address this node announces (given, or the default route's interface). */
  advertise: string
  join?: JoinFile
  /** How long `finish` waits for the node and kube-system to come up. */
  waitMs: number
}

export interface InstallOptions {
  role: 'master' | 'worker'
  /** Plan and print, change nothing: the context's hosts are then DryRunHosts. */
  dryRun: boolean
  containerdAddress: string
  json: boolean
  verbose: boolean
}

/** Everything a phase or a check works from, resolved once (installer/context.ts). */
export interface Context {
  /** The node (under --root: the root folder). */
  host: Host
  /** The bundle folder, where the join files go: it came on a stick, so no link in it is followed. */
  usb: Host
  bundle: Bundle
  options: InstallOptions
  cluster: ClusterSetup
  /** The machine's facts, gathered once: the checks read these, never process, os or the clock. */
  facts: NodeFacts
  /** A line for the user (warnings, what was found). */
  say(line: string): void
  /** Signs of life during a run: a step starting, a long command's output, a wait's progress. */
  live?: Live
  /** The run's log, once the bundle is verified (none in a dry run). */
  log?: RunLog
}

export interface Live {
  started(phase: string, title: string): void
  output(text: string): void
  /** A status that replaces the last one (\`waiting 45/600 s: calico-node not running\`). */
  waiting(line: string): void
}

export interface Phase {
  name: PhaseName
  summary: string
  /**
   * Every action runs even when one before it failed (reset: a pod whose network teardown
   * fails must not stop the cleanup written for it); the failures are reported together at
   * the end.
   */
  bestEffort?: boolean
  /** Works out the steps from the node's state now. */
  plan(ctx: Context): Promise<Step[]>
}

/** Writing `content` to `path`, checked against its sha256 as it is written. */
export function writeAction(path: string, content: string | Buffer, mode = 0o644, owner?: { uid: number; gid: number }): Action {
  const data = Buffer.isBuffer(content) ? content : Buffer.from(content)
  return { kind: 'write', path, mode, sha256: Sha256.of(data), size: data.length, data: () => data, ...(owner ? { owner } : {}) }
}

/** A file step: done when the node's file has these bytes and this mode. */
export async function fileStep(
  ctx: Context,
  title: string,
  path: string,
  content: string | Buffer,
  mode = 0o644,
  owner?: { uid: number; gid: number },
): Promise<Step> {
  const write = writeAction(path, content, mode, owner) as Extract<Action, { kind: 'write' }>
  const now = await ctx.host.fileState(path)
  return {
    title,
    done: !!now && now.sha256.equals(write.sha256) && now.mode === mode,
    actions: [write],
  }
}

export interface StepReport {
  phase: PhaseName
  title: string
  status: 'done' | 'already done' | 'would do' | 'checked' | 'would check' | 'failed'
  actions: { kind: string; path?: string; to?: string; sha256?: string; mode?: string; argv?: string[] }[]
}

export async function perform(host: Host, action: Action, output?: (text: string) => void): Promise<void> {
  if (action.kind === 'write') await host.write(action.path, await action.data(), action.mode, action.sha256, action.owner)
  else if (action.kind === 'remove') await host.remove(action.path)
  else if (action.kind === 'rename') await host.rename(action.path, action.to)
  else if (action.kind === 'parallel') await Promise.all(action.actions.map((a) => perform(host, a)))
  else if (action.kind === 'extract') {
    const byMember = new Map(action.files.map((f) => [f.member, f]))
    await extractMembers(action.archive, new Set(byMember.keys()), async (member, body) => {
      const f = byMember.get(member)!
      await host.write(f.path, body, f.mode, f.sha256)
    })
  } else {
    const r = await host.run(action.argv, {
      ...(action.input ? { input: action.input() } : {}),
      ...(action.timeoutMs ? { timeoutMs: action.timeoutMs } : {}),
      ...(action.stream && output ? { onOutput: output } : {}),
    })
    if (r.code !== 0)
      throw new KaError(
        'ESTEP',
        action.failure?.(r.stderr || r.stdout) ??
          `\`${action.argv.join(' ')}\` exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`,
        { argv: action.argv },
      )
  }
}

const octal = (mode: number) => mode.toString(8).padStart(4, '0')

export const describeAction = (a: Action): StepReport['actions'] =>
  a.kind === 'parallel'
    ? a.actions.flatMap(describeAction)
    : a.kind === 'write'
      ? [{ kind: 'write', path: a.path, sha256: a.sha256.oci, mode: octal(a.mode) }]
      : a.kind === 'extract'
        ? a.files.map((f) => ({ kind: 'write', path: f.path, sha256: f.sha256.oci, mode: octal(f.mode) }))
        : a.kind === 'run'
          ? [{ kind: 'run', argv: a.argv }]
          : a.kind === 'rename'
            ? [{ kind: 'rename', path: a.path, to: a.to }]
            : [{ kind: 'remove', path: a.path }]

/**
 * Runs phases in order. Each phase is planned from the node's state when it starts (a
 * phase may depend on what the one before did); each step says whether it is already done,
 * and only steps that are not are performed. A dry run prints every action instead.
 */
export async function runPhases(ctx: Context, phases: Phase[], onStep: (r: StepReport) => void): Promise<StepReport[]> {
  const reports: StepReport[] = []
  for (const phase of phases) {
    const steps = await phase.plan(ctx)
    const failures: string[] = []
    for (const step of steps) {
      // A dry run claims only what it saw: a check it does not run is one it would run.
      const checked = step.check && ctx.options.dryRun ? 'would check' : 'checked'
      let status: StepReport['status'] = step.checkOnly ? checked : step.done ? 'already done' : ctx.options.dryRun ? 'would do' : 'done'
      if (!step.done && !ctx.options.dryRun) {
        ctx.live?.started(phase.name, step.title)
        for (const a of step.actions) {
          try {
            await perform(step.on ?? ctx.host, a, ctx.live?.output)
          } catch (e) {
            if (!phase.bestEffort) throw stepError(phase.name, step.title, e)
            failures.push(`${step.title}: ${(e as Error).message}`)
            status = 'failed'
          }
        }
      }
      if (step.check && !ctx.options.dryRun) {
        try {
          await step.check()
        } catch (e) {
          throw stepError(phase.name, step.title, e)
        }
      }
      const r: StepReport = { phase: phase.name, title: step.title, status, actions: step.done ? [] : step.actions.flatMap(describeAction) }
      reports.push(r)
      onStep(r)
    }
    if (failures.length) {
      throw new KaError(
        'ESTEP',
        `${phase.name}: every step ran, ${failures.length} failed: ${failures.join('; ')}; run it again to finish (what is done stays done)`,
        { phase: phase.name, failures },
      )
    }
  }
  return reports
}

function stepError(phase: PhaseName, title: string, e: unknown): KaError {
  const err = e as KaError
  return new KaError(err.code && err.code !== 'ESTEP' ? err.code : 'ESTEP', `${phase}: ${title}: ${err.message}`, { phase, ...(err.facts ?? {}) })
}
