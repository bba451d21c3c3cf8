import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, copyFile, mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { C } from '../../bundle/components.js'
import { kubeadmImages, kubeadmRow } from '../../bundle/closed-world.js'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import type { KubeadmRow, LockedFile } from '../../bundle/lock.js'
import type { Platform } from '../../bundle/platform.js'
import { download } from '../download/download.js'
import { applyMirrors } from '../download/http.js'
import type { LockOptions } from './lock.js'

/** This machine's platform, when it is one a bundle has: where a pinned kubeadm can run. */
export function buildPlatform(): Platform | undefined {
  if (process.platform !== 'linux') return undefined
  return process.arch === 'x64' ? 'linux/amd64' : process.arch === 'arm64' ? 'linux/arm64' : undefined
}

export interface KubeadmAnswer {
  row: KubeadmRow
  /** Where the row came from: kubeadm itself, or the committed table (and why not kubeadm). */
  from: 'kubeadm' | 'table'
  /** The table's row for the version, when it has one (to compare with kubeadm's). */
  table?: KubeadmRow
  why?: string
}

/**
 * kubeadm's images for the lock's version, asked of the pinned kubeadm itself: the one for
 * this machine's platform, downloaded into the cache and checked against its pin, copied into
 * a throw-away folder and checked again, then run there with nothing of the user's
 * environment (`config images list` with an explicit version reads nothing from the network;
 * its proxy points nowhere all the same). Where it cannot run here (another OS or
 * architecture, a binary that does not start), the committed table answers, and `note` says so.
 */
export async function kubeadmAnswer(kubernetes: string, files: readonly LockedFile[], tableText: string, o: LockOptions): Promise<KubeadmAnswer> {
  const tableRow = yamlRow(tableText, kubernetes)
  const fallback = (why: string): KubeadmAnswer => {
    if (!tableRow) throw noRow(kubernetes, why)
    o.progress.note(`note     kubeadm's image list for v${kubernetes} comes from manifests/kubeadm-images.yaml: ${why}`)
    return { row: tableRow, from: 'table', table: tableRow, why }
  }
  const platforms = [...new Set(files.filter((f) => f.name === C.kubeadm).map((f) => f.platform!))]
  const why = whyNotKubeadm(platforms, o)
  if (why) return fallback(why)
  const pinned = files.find((f) => f.name === C.kubeadm && f.platform === buildPlatform())!
  const dir = await mkdtemp(join(tmpdir(), 'kube-airgap-kubeadm-'))
  try {
    if (!(await o.cache.has(pinned.integrity))) {
      const partial = o.cache.partialPath(`kubeadm-${randomBytes(8).toString('hex')}`)
      try {
        const what = `kubeadm ${pinned.version} ${pinned.platform}`
        const got = await download({ what, url: applyMirrors(pinned.url, o.mirrors), partial, expected: pinned.integrity }, o.http)
        await o.cache.commit(partial, got.digest)
      } finally {
        await rm(partial, { force: true })
      }
    }
    const bin = join(dir, 'kubeadm')
    await copyFile(o.cache.blobPath(pinned.integrity), bin)
    const copied = (await Sha256.ofFile(bin)).digest
    if (!copied.equals(pinned.integrity))
      throw new KaError('EINTEGRITY', `kubeadm ${pinned.version}: the cached copy is not what the lock pins; run bundle lock again`)
    const kind = await programKind(bin)
    if (kind) return fallback(`the pinned kubeadm ${pinned.platform} is not a program this machine runs (${kind})`)
    await chmod(bin, 0o755)
    const r = await run(bin, ['config', 'images', 'list', '--kubernetes-version', `v${kubernetes}`, '-o', 'json'], dir)
    if (r.error) return fallback(`the pinned kubeadm ${pinned.platform} did not run here (${r.error})`)
    let list: string[]
    try {
      list = (JSON.parse(r.stdout) as { images?: unknown[] }).images?.map(String) ?? []
    } catch {
      return fallback(`the pinned kubeadm printed no image list (${r.stdout.trim().split('\n')[0]?.slice(0, 80) || 'nothing'})`)
    }
    const row = kubeadmRow(kubernetes, list)
    if (!row) return fallback(`the pinned kubeadm listed images of another shape than the table's (${list.join(', ')})`)
    return { row, from: 'kubeadm', ...(tableRow ? { table: tableRow } : {}) }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * Why a file is not something this machine executes: only an ELF for this architecture, or a
 * script (#!), is run. Anything else would reach execvp's fallback, which hands a file the
 * kernel refuses to /bin/sh: bytes of another architecture are never run as shell commands.
 */
async function programKind(path: string): Promise<string | undefined> {
  const fd = await open(path, 'r')
  try {
    const head = Buffer.alloc(20)
    await fd.read(head, 0, 20, 0)
    if (head.subarray(0, 2).toString('latin1') === '#!') return undefined
    if (head.subarray(0, 4).toString('latin1') !== '\x7fELF') return 'not an ELF executable'
    const machine = head.readUInt16LE(18)
    const want = process.arch === 'x64' ? 0x3e : process.arch === 'arm64' ? 0xb7 : -1
    return machine === want ? undefined : `an ELF for machine 0x${machine.toString(16)}, this one is ${process.arch}`
  } finally {
    await fd.close()
  }
}

/** Why the pinned kubeadm will not be asked here, if it will not. */
export function whyNotKubeadm(platforms: readonly Platform[], o: Pick<LockOptions, 'runKubeadm'>): string | undefined {
  if (o.runKubeadm === false) return 'asked not to run kubeadm (--no-kubeadm)'
  const here = buildPlatform()
  if (!here || !platforms.includes(here)) return `this machine (${process.platform}/${process.arch}) cannot run the lock's kubeadm (${platforms.join(', ')})`
  return undefined
}

/** A version kubeadm will not be asked about and the table does not know: refused before anything is fetched. */
export function precheckKubeadm(kubernetes: string, platforms: readonly Platform[], tableText: string, o: Pick<LockOptions, 'runKubeadm'>): void {
  const why = whyNotKubeadm(platforms, o)
  if (why && !yamlRow(tableText, kubernetes)) throw noRow(kubernetes, why)
}

const noRow = (kubernetes: string, why: string) =>
  new KaError(
    'ENOTPINNED',
    `Kubernetes ${kubernetes}: ${why}, and manifests/kubeadm-images.yaml has no row for it; run bundle lock on a linux amd64 or arm64 machine (it asks the pinned kubeadm), or add the row`,
  )

function yamlRow(tableText: string, kubernetes: string): KubeadmRow | undefined {
  try {
    const row = kubeadmImages(kubernetes, tableText)
    const tag = (repo: string) =>
      row.kubeadm
        .find((i) => i.includes(`/${repo}:`))!
        .split(':')
        .pop()!
    return { coredns: tag('coredns'), etcd: tag('etcd'), pause: tag('pause') }
  } catch {
    return undefined
  }
}

/** The binary run with an empty environment in its folder, for at most a minute. */
function run(bin: string, args: string[], cwd: string): Promise<{ stdout: string; error?: string }> {
  return new Promise((resolve) => {
    execFile(
      bin,
      args,
      {
        cwd,
        timeout: 60_000,
        env: {
          PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
          HOME: cwd,
          KUBECONFIG: join(cwd, 'none'),
          HTTPS_PROXY: 'http://127.0.0.1:9',
          HTTP_PROXY: 'http://127.0.0.1:9',
          NO_PROXY: '',
        },
        maxBuffer: 1 << 20,
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout: String(stdout) })
        const e = err as NodeJS.ErrnoException & { code?: string | number }
        const why = typeof e.code === 'string' ? e.code : `exit ${e.code}: ${String(stderr).trim().split('\n').pop() ?? ''}`
        resolve({ stdout: String(stdout), error: why })
      },
    )
  })
}
