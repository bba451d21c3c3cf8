import { C } from '../../bundle/components.js'
import { KaError } from '../../bundle/errors.js'
import { backupScript, backupService, backupSettings, backupTimer, type EtcdMember, etcdMember, isBackupOf } from '../etcd.js'
import {
  BACKUP_DIR,
  BACKUP_SCRIPT,
  BACKUP_SERVICE,
  BACKUP_SETTINGS,
  BACKUP_TIMER,
  BACKUP_UNIT_NAME,
  BIN_DIR,
  ETCD_MANIFEST,
  RESTART_DIR,
} from '../node-paths.js'
import { type Context, fileStep, type Phase, type Step } from '../plan.js'
import { membersStep, unitState } from '../steps.js'

export interface BackupOptions {
  dir: string
  keep: number
  /** daily: the timer installed (or kept); off: removed; undefined: left as it is. */
  schedule?: 'daily' | 'off'
}

/** --dir, --keep and --schedule, checked: an absolute folder of plain names, a count, daily or off. */
export function backupOptions(flags: { dir?: string; keep?: string; schedule?: string }): BackupOptions {
  const dir = (flags.dir ?? BACKUP_DIR).replace(/\/+$/, '')
  if (!/^(\/[A-Za-z0-9._-]+)+$/.test(dir) || dir.split('/').some((s) => s === '..' || s === '.'))
    throw new KaError('EUSAGE', `--dir ${JSON.stringify(flags.dir)} is not an absolute folder of plain names; give one like ${BACKUP_DIR}`)
  const keep = Number(flags.keep ?? '7')
  if (!Number.isInteger(keep) || keep < 1 || keep > 10000)
    throw new KaError('EUSAGE', `--keep ${JSON.stringify(flags.keep)} is not a count of backups; give a whole number from 1`)
  const schedule = flags.schedule
  if (schedule !== undefined && schedule !== 'daily' && schedule !== 'off')
    throw new KaError('EUSAGE', `--schedule ${JSON.stringify(schedule)} is not known; give --schedule daily (a timer) or --schedule off (no timer)`)
  return { dir, keep, ...(schedule ? { schedule } : {}) }
}

/** This master's etcd, from kubeadm's static pod (or where certs renew or restore keeps it while etcd is stopped). */
export async function localEtcd(ctx: Context, command: string): Promise<{ member: EtcdMember; manifest: Buffer }> {
  for (const path of [ETCD_MANIFEST, `${RESTART_DIR}/etcd.yaml`]) {
    const manifest = await ctx.host.read(path)
    if (manifest) return { member: etcdMember(manifest.toString('utf8'), path), manifest }
  }
  throw new KaError(
    'EUSAGE',
    `./install ${command} runs on a master: this node has no ${ETCD_MANIFEST} (a worker, or etcd outside the cluster); run it on a master`,
  )
}

/** The etcd clients of the cluster's own etcd version, from the bundle, into BIN_DIR. */
export const etcdToolsStep = (ctx: Context): Promise<Step> =>
  membersStep(ctx, `etcd ${ctx.bundle.file(C.etcd).locked.version}'s clients in ${BIN_DIR}`, C.etcd, BIN_DIR)

/**
 * `./install backup`: the backup script and its settings on this master, the timer as asked,
 * then one backup now. The script is the one place a backup is made (the timer runs it too).
 */
export function backupPhase(o: BackupOptions): Phase {
  return {
    name: 'snapshot',
    summary: `a consistent etcd snapshot, the PKI and kubeadm's configuration in one file (0600, its sha256 beside it), the newest kept; --schedule daily: a systemd timer that does the same`,
    async plan(ctx) {
      const { member } = await localEtcd(ctx, 'backup')
      const steps = [
        await etcdToolsStep(ctx),
        await fileStep(ctx, `the backup script (${BACKUP_SCRIPT})`, BACKUP_SCRIPT, backupScript(), 0o755),
        await fileStep(ctx, `its settings: member ${member.name} at ${member.clientUrl} (${BACKUP_SETTINGS})`, BACKUP_SETTINGS, backupSettings(member), 0o600),
        ...(await scheduleSteps(ctx, o)),
      ]
      steps.push({
        title: `a backup of etcd (member ${member.name}), the PKI and kubeadm's configuration into ${o.dir}, the newest ${o.keep} kept`,
        done: false,
        actions: [{ kind: 'run', argv: [BACKUP_SCRIPT, o.dir, String(o.keep)], failure: (out) => backupFailure(out, member) }],
      })
      return steps
    },
  }
}

const backupFailure = (out: string, m: EtcdMember): string =>
  `the backup failed: ${out.trim().split('\n').pop()}; is etcd up (crictl ps --name etcd) and answering at ${m.clientUrl}? Nothing was kept of this try`

async function scheduleSteps(ctx: Context, o: BackupOptions): Promise<Step[]> {
  if (o.schedule === undefined) return []
  const timer = `${BACKUP_UNIT_NAME}.timer`
  const state = await unitState(ctx, timer)
  if (o.schedule === 'off') {
    const there = (await ctx.host.exists(BACKUP_TIMER)) || (await ctx.host.exists(BACKUP_SERVICE))
    return [
      {
        title: `${timer} stopped and disabled`,
        done: !state.enabled && !state.active,
        actions: [{ kind: 'run', argv: ['systemctl', 'disable', '--now', timer] }],
      },
      {
        title: `its units removed (${BACKUP_TIMER}, ${BACKUP_SERVICE})`,
        done: !there,
        actions: [
          { kind: 'remove', path: BACKUP_TIMER },
          { kind: 'remove', path: BACKUP_SERVICE },
          { kind: 'run', argv: ['systemctl', 'daemon-reload'] },
        ],
      },
    ]
  }
  const service = await fileStep(ctx, `the daily backup's service (${BACKUP_SERVICE})`, BACKUP_SERVICE, backupService(o.dir, o.keep))
  const timerFile = await fileStep(ctx, `its timer, daily (${BACKUP_TIMER})`, BACKUP_TIMER, backupTimer())
  return [
    service,
    timerFile,
    { title: 'systemd knows them', done: service.done && timerFile.done, actions: [{ kind: 'run', argv: ['systemctl', 'daemon-reload'] }] },
    { title: `${timer} enabled and started`, done: state.enabled && state.active, actions: [{ kind: 'run', argv: ['systemctl', 'enable', '--now', timer] }] },
  ]
}

/** The newest backup of this master in `dir`, for the operator: its path, size and sha256 (from the file beside it). */
export async function newestBackup(ctx: Context, dir: string): Promise<string | undefined> {
  const { member } = await localEtcd(ctx, 'backup')
  const mine = (await ctx.host.list(dir)).filter((f) => isBackupOf(member.name, f)).sort()
  const name = mine.at(-1)
  if (!name) return undefined
  const sum = (await ctx.host.readText(`${dir}/${name}.sha256`))?.split(' ')[0]
  return `backup: ${dir}/${name}\n        sha256 ${sum ?? '(none beside it)'}; ${mine.length} of this master in ${dir}\n`
}
