import { createReadStream } from 'node:fs'
import { basename } from 'node:path'
import { type ComponentName, NODE_TAKES } from '../bundle/components.js'
import { listMembers, type Member } from './archive.js'
import { type Context, type Step, writeAction } from './plan.js'
import { unitActive } from './node-state.js'

/**
 * A system file edited in place (/etc/fstab, /etc/selinux/config), its first original kept at
 * `backup` for reset --purge to restore: done when the edit changes nothing. A later run never
 * overwrites that backup with an edited file.
 */
export async function editStep(ctx: Context, title: string, path: string, backup: string, edit: (text: string) => string): Promise<Step> {
  const text = (await ctx.host.readText(path)) ?? ''
  const fixed = edit(text)
  const original = Buffer.from(text)
  return {
    title: `${title} (${path}; the original is kept as ${backup})`,
    done: fixed === text,
    actions: [...((await ctx.host.exists(backup)) ? [] : [writeAction(backup, original)]), writeAction(path, fixed)],
  }
}

/** A locked file of the bundle, copied to `path`: done when the node's copy has the same hash and mode. */
export async function copyStep(ctx: Context, title: string, path: string, component: string, mode: number): Promise<Step> {
  const src = ctx.bundle.file(component)
  const sha256 = src.locked.integrity
  const now = await ctx.host.fileState(path)
  return {
    title,
    done: !!now && now.sha256.equals(sha256) && now.mode === mode,
    actions: [{ kind: 'write', path, mode, sha256, size: src.locked.size ?? 0, data: () => createReadStream(src.path, { highWaterMark: 1 << 20 }) }],
  }
}

/**
 * The regular files of an archive from the bundle, installed into `dir` under their base
 * names (mode 0755), those that differ, in one pass over the archive (hashes come from
 * another pass at plan time).
 */
export async function membersStep(ctx: Context, title: string, component: ComponentName, dir: string): Promise<Step> {
  const { path: archive } = ctx.bundle.file(component)
  const members = await nodeMembers(ctx, component)
  const files = []
  for (const m of members) {
    const path = `${dir}/${basename(m.path)}`
    const now = await ctx.host.fileState(path)
    if (!(now?.sha256.equals(m.sha256) && now.mode === 0o755)) files.push({ member: m.path, path, mode: 0o755, sha256: m.sha256 })
  }
  return { title: `${title} (${members.map((m) => basename(m.path)).join(', ')})`, done: files.length === 0, actions: [{ kind: 'extract', archive, files }] }
}

/** The members of a component's archive the node takes (bundle/components.ts says which), hashed from the pinned bytes. */
export async function nodeMembers(ctx: Context, component: ComponentName): Promise<Member[]> {
  const takes = NODE_TAKES[component]
  const { members: under, names } = takes.kind === 'archive' ? takes : {}
  const { path, locked } = ctx.bundle.file(component)
  return (await listMembers(path, locked.integrity)).filter((m) => (!under || m.path.startsWith(under)) && (!names || names.includes(basename(m.path))))
}

/** Whether a systemd unit is enabled / active (queries: they run in a dry run too). */
export async function unitState(ctx: Context, unit: string): Promise<{ enabled: boolean; active: boolean }> {
  const [e, active] = await Promise.all([ctx.host.run(['systemctl', 'is-enabled', unit], { changing: false }), unitActive(ctx.host, unit)])
  return { enabled: e.code === 0, active }
}
