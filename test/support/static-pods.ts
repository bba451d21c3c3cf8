import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream, existsSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import yaml from 'js-yaml'

/**
 * The kubelet's static pods for one real program (pkg/kubelet/config/file.go watches
 * /etc/kubernetes/manifests): while `<pod>.yaml` is there, its command runs (every absolute path
 * in an argument, `/path` or `--flag=/path`, and in its environment found under the node root); once the manifest is gone, the
 * process is stopped (SIGTERM, as the kubelet stops a container); a process that exits while
 * its manifest is there is started again after a second (the kubelet's restart backoff).
 * `$root/.pods/<pod>.running` says it runs, for the crictl stand-in.
 */
export interface StaticPod {
  /** Kills the process as a crash would (SIGKILL), does `meanwhile`, and lets the runner start it again. */
  crash(meanwhile?: () => Promise<void>): Promise<void>
  stop(): Promise<void>
}

export async function runStaticPod(root: string, pod: string, bin: string, logFile: string): Promise<StaticPod> {
  const manifest = join(root, 'etc/kubernetes/manifests', `${pod}.yaml`)
  const running = join(root, '.pods', `${pod}.running`)
  await mkdir(join(root, '.pods'), { recursive: true })
  await writeFile(join(root, '.pods', `${pod}.managed`), '')
  const log = createWriteStream(logFile, { flags: 'a' })
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  let stopped = false
  let restartAt = 0
  const start = async () => {
    const doc = yaml.load(await readFile(manifest, 'utf8')) as { spec: { containers: { command: string[]; env?: { name: string; value: string }[] }[] } }
    const container = doc.spec.containers[0]!
    const under = (a: string) => a.replace(/^(--[a-z-]+=)?(\/.*)$/, (_, f: string | undefined, p: string) => `${f ?? ''}${join(root, p)}`)
    const args = container.command.slice(1).map(under)
    // The container's environment, each path in it found under the node root (its hostPath volumes mount them at the same paths).
    const env = { ...process.env, ...Object.fromEntries((container.env ?? []).map((e) => [e.name, under(e.value)])) }
    const c = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
    c.stdout!.pipe(log, { end: false })
    c.stderr!.pipe(log, { end: false })
    child = c
    await writeFile(running, '')
    exited = new Promise((resolve) =>
      c.on('exit', () => {
        if (child === c) child = undefined
        restartAt = Date.now() + 1000
        void rm(running, { force: true }).then(() => resolve())
      }),
    )
  }
  let busy = false
  const tick = async () => {
    if (busy || stopped) return
    busy = true
    try {
      const wanted = existsSync(manifest)
      if (wanted && !child && Date.now() >= restartAt) await start()
      else if (!wanted && child) {
        child.kill('SIGTERM')
        await exited
      }
    } finally {
      busy = false
    }
  }
  const timer = setInterval(() => void tick(), 100)
  await tick()
  return {
    async crash(meanwhile) {
      while (busy) await new Promise((r) => setTimeout(r, 20))
      busy = true
      try {
        child?.kill('SIGKILL')
        await exited
        await meanwhile?.()
      } finally {
        busy = false
      }
    },
    async stop() {
      stopped = true
      clearInterval(timer)
      child?.kill('SIGTERM')
      await exited
      log.end()
    },
  }
}
